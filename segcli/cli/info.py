"""`segcli info`: describe a checkpoint or exported model."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from segcli.cli.app import app
from segcli.cli.common import apply_config, apply_quiet, config_option, quiet_option


@app.command()
def info(
    ctx: typer.Context,
    model: Optional[str] = typer.Argument(None, metavar="MODEL", help="Checkpoint (.pt), run folder, .onnx or .torchscript; default: newest run's best.pt.", show_default=False),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there."),
    quiet: bool = quiet_option(),
    config: Optional[str] = config_option(),
) -> None:
    """Show what a model holds: classes, channels, normalization, architecture, training data, best metrics."""
    from segcli.infer.predictor import resolve_model
    from segcli.infer.modelinfo import model_info

    apply_quiet(quiet)
    params = apply_config(ctx, config)
    result = model_info(resolve_model(params["model"]))
    if params["json_out"]:
        print(json.dumps(result))
        return
    _print(result)


def _channels(r: dict[str, Any]) -> str:
    """'3 channel(s)', or for a multi-band model '6 bands (shown: 3,2,1)'."""
    c = r["in_channels"]
    if c in (1, 3):
        return f"{c} channel(s)"
    shown = r.get("display_bands") or []
    return f"{c} bands" + (f" (shown: {','.join(str(b) for b in shown)})" if shown else "")


def _estimator(q: Any) -> str:
    """What `--quality` can do with this model."""
    if not q:
        return "no quality estimator (predict --quality needs a model trained by this segcli)"
    cal = q.get("calibration") or {}
    where = (f"{q['file']} beside the model, {q.get('weights_dtype') or 'float32'}" if q.get("file")
             else f"{q.get('parameters') or 0:,} parameters")
    if not cal.get("calibrated"):
        return f"estimator ({where}); not calibrated (the run did not finish): estimates are the expected {q.get('target') or 'quality'}"
    return (f"estimator ({where}), estimating {q.get('target')}; calibrated on {cal.get('regions')} regions of "
            f"{cal.get('images')} validation images (in-sample Spearman {cal.get('spearman')})")


def _export(e: dict[str, Any]) -> str:
    """Weights, and for an int8 model how it was calibrated and what its verification measured."""
    text = f"{e.get('weights_dtype')} weights, from {(e.get('source') or {}).get('checkpoint')}"
    q = e.get("quantization") or {}
    v = q.get("verified") or {}
    if q:
        agree = v.get("agreement")
        text += (f"; {q.get('format')} int8, calibrated on {(q.get('calibration') or {}).get('images')} images; "
                 f"verified on {v.get('images')} images: mIoU {v.get('mIoU_int8')} vs fp32 {v.get('mIoU_fp32')}, "
                 + (f"{agree:.2%}" if isinstance(agree, (int, float)) else "?") + " of mask pixels equal")
    return text


def _print(r: dict[str, Any]) -> None:
    from segcli.console import fmt, out, summary_table

    norm = r["normalization"]
    arch = r["architecture"]
    rows = [
        ("file", f"{r['path']} ({r['kind']}, segcli {r.get('segcli_version') or '?'})"),
        ("task", f"{r['task']}, {r['num_classes']} classes" + (f", ignore index {r['ignore_index']}" if r["ignore_index"] is not None else "")),
        ("classes", ", ".join(f"{i}={n}" for i, n in enumerate(r["classes"]))),
        ("input", f"{_channels(r)}; mean {', '.join(fmt(v, 3) for v in norm['mean'])}; "
                  f"std {', '.join(fmt(v, 3) for v in norm['std'])}"),
        ("architecture", ", ".join(f"{k} {v}" for k, v in arch.items() if v is not None and not k.endswith("parameters"))),
    ]
    if arch.get("generator_parameters"):
        d = arch.get("discriminator_parameters")
        rows.append(("parameters", f"generator {arch['generator_parameters']:,}" + (f", discriminator {d:,}" if d else ", no discriminator")))
    t = r.get("training")
    if t:
        rows.append(("trained on", f"{t.get('data')}: {t.get('epochs_run')} of {t.get('epochs_planned')} epochs, "
                                   f"patch {t.get('img_size')}, batch {t.get('batch_size')}, seed {t.get('seed')}"))
        loss = t.get("loss") or "ce"
        extra = f" (gamma {t.get('focal_gamma')})" if loss == "focal" else ""
        weights = (r.get("data") or {}).get("class_weights") or t.get("class_weights")
        if isinstance(weights, list):
            weights = "[" + ", ".join(fmt(float(w), 3) for w in weights) + "]" + (" (auto)" if t.get("class_weights") == "auto" else "")
        rows.append(("losses", f"gan {t.get('gan')} x {t.get('adv_weight')}, segmentation {loss}{extra} + Dice"
                               + (f", class weights {weights}" if weights else "")))
    d = r.get("data")
    if d:
        rows.append(("training data", f"{d.get('train_images')} train / {d.get('val_images')} val images"))
        px = d.get("class_pixels") or []
        if sum(px):
            rows.append(("class share", ", ".join(f"{n} {p / sum(px):.1%}" for n, p in zip(r["classes"], px))))
    b = r.get("best")
    if b and b.get("epoch"):
        rows.append(("best val", f"mIoU {fmt(b.get('val_mIoU'))}, Dice {fmt(b.get('val_Dice'))} (epoch {b['epoch']})"))
    rows.append(("tiling", f"automatic above 4x the training patch ({r['train_size']} px) or 2048x2048 pixels"
                  if r.get("train_size") else "automatic above 2048x2048 pixels (the training patch is not recorded)"))
    j = r.get("judges")
    if j:
        rows.append(("judges", f"discriminator {j.get('discriminator')}: {j.get('discriminator_predicts')}; "
                               f"quality estimate: {j.get('quality_estimate')}"))
    if r.get("export"):
        rows.append(("export", _export(r["export"])))
    rows.append(("quality", _estimator(r.get("quality_estimator"))))
    out().print(summary_table(f"segcli model: {r['path']}", rows))
