"""Helpers shared by commands: config files merged under command-line options, --quiet.

Any command gets --config in three lines:

    config: Optional[str] = config_option()          # in the signature, next to `ctx: typer.Context`
    ...
    params = apply_config(ctx, config)               # first line of the body; use params[...] after

Values from the file are converted and validated by the option's own type, exactly as if they
had been typed; what the command line sets explicitly always wins.
"""

from __future__ import annotations

import functools
import inspect

from pathlib import Path
from typing import Any, Callable, Optional

import typer

from segcli.cli._compat import ClickException, ParameterSource
from segcli.errors import UserError

# A run's saved config.yaml holds {train: ..., model: ..., data_info: ...}; every command reads
# train/model, so `segcli check --config runs/train/exp/config.yaml` checks that run's data.
_RUN_SECTIONS = ("train", "model")
_COMMAND_SECTIONS = ("train", "model", "data_info", "predict", "evaluate", "export", "check", "info",
                     "serve")


def config_option() -> Any:
    return typer.Option(None, "--config", help="YAML or TOML file of options; command-line options win.")


def quiet_option() -> Any:
    return typer.Option(False, "--quiet", "-q", help="Only results on stdout; no progress or notes.")


def apply_quiet(quiet: bool) -> None:
    """Per-command -q (`segcli train -q ...`) acts as the root `segcli -q train ...`."""
    if quiet:
        from segcli import console

        console.QUIET = True


def read_config_file(path: str, command: Optional[str] = None) -> dict[str, Any]:
    """A YAML or TOML mapping of option names (dashes or underscores) to values.

    Precedence inside the file: a run's train/model sections < top-level keys < the
    section named after the command (`predict: {batch_size: 8}`).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: config file not found")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            values = tomllib.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text) or {}
    except Exception as e:
        raise UserError(f"{p}: cannot parse config file ({str(e).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UserError(f"{p}: config file must hold a mapping of option names to values")
    flat: dict[str, Any] = {}
    for section in _RUN_SECTIONS:
        if isinstance(values.get(section), dict):
            flat.update(values[section])
    flat.update({k: v for k, v in values.items() if not (k in _COMMAND_SECTIONS and isinstance(v, dict))})
    if command and command not in _RUN_SECTIONS and isinstance(values.get(command), dict):
        flat.update(values[command])
    return {str(k).replace("-", "_"): v for k, v in flat.items()}


def _convert(ctx: typer.Context, name: str, value: Any, config: str) -> Any:
    """A file value through the option's click type: `precision: 32` -> '32', bad values -> exit 2."""
    param = next((p for p in ctx.command.params if p.name == name), None)
    if param is None or value is None:
        return value
    if isinstance(value, (list, tuple)) and not getattr(param, "multiple", False) and param.nargs == 1:
        value = ",".join(str(v) for v in value)  # e.g. class_weights: [1, 2, 0.5]
    try:
        if hasattr(param, "get_runtime_param"):  # Typer >= 0.25 converts values itself
            return param.get_runtime_param().coerce(value, param=param, ctx=ctx)
        return param.type_cast_value(ctx, value)
    except ClickException as e:
        raise UserError(f"{config}: option {name}: {e.format_message()}") from None


def merge_config(
    ctx: typer.Context, params: dict[str, Any], config: Optional[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options from --config FILE fill in whatever the command line left at its default.

    Returns the merged options and the file's entries that match no option (the caller may
    know them as config fields, e.g. from a run's saved config.yaml).
    """
    if not config:
        return params, {}
    values = read_config_file(config, ctx.command.name)
    # a key may be the parameter's name or any of its long option names: json_out <- json, lr_g <- lr
    alias = {o[2:].replace("-", "_"): p.name for p in ctx.command.params
             for o in [*p.opts, *getattr(p, "secondary_opts", [])] if o.startswith("--")}
    merged = dict(params)
    rest: dict[str, Any] = {}
    for key, value in values.items():
        name = key if key in params else alias.get(key, key)
        if name in ("config", "quiet"):
            continue
        if name not in params:
            rest[name] = value
        elif ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None):
            merged[name] = _convert(ctx, name, value, config)
    return merged, rest


def apply_config(ctx: typer.Context, config: Optional[str]) -> dict[str, Any]:
    """The command's parameters with --config merged in; unknown names get one warning.

    Training settings (from a run's config.yaml) are ignored quietly by other commands.
    """
    params, rest = merge_config(ctx, dict(ctx.params), config)
    if rest and ctx.command.name != "train":
        import dataclasses

        from segcli.config import DataInfo, ModelConfig, TrainConfig

        known = {f.name for c in (TrainConfig, ModelConfig, DataInfo) for f in dataclasses.fields(c)}
        warn_unknown(config, [k for k in rest if k not in known])
    return params


def warn_unknown(config: Optional[str], names: list[str]) -> None:
    if names:
        from segcli.console import info

        info(f"[yellow]warning[/]: {config}: ignoring unknown option(s) {', '.join(sorted(names))}")


def require(params: dict[str, Any], name: str, example: str) -> Any:
    """An argument that may come from the command line or the config file, but must come."""
    if params.get(name) in (None, ""):
        raise UserError(f"missing {name.upper()}: pass it on the command line or in --config, e.g. `{example}`")
    return params[name]


def configurable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command `--config FILE` and `-q`: the file fills whatever the command line left
    at its default, then the command runs with the merged values (predict, evaluate, export)."""
    sig = inspect.signature(fn, eval_str=True)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("ctx", kind, annotation=typer.Context), *sig.parameters.values(),
              inspect.Parameter("config", kind, default=config_option(), annotation=Optional[str]),
              inspect.Parameter("quiet", kind, default=quiet_option(), annotation=bool)]

    @functools.wraps(fn)
    def command(ctx: typer.Context, **kwargs: Any) -> Any:
        apply_quiet(kwargs["quiet"])
        merged = apply_config(ctx, kwargs["config"])
        return fn(**{name: merged[name] for name in sig.parameters})

    command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command
