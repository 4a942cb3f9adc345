"""`segcli select`: which unlabelled images to label next.

The model runs over the pool (segcli.infer.select.pool), the images already labelled in
`--labeled DATA` skipped; the most promising are picked, kept diverse (select.pick), and with
`-o DIR` copied beside the model's masks as a head start for the annotator (select.output).
Diversity (`--spread`): `pool`, in proportion to the pool (select.spread: parts of the pool that
each hold one pick's share, the most promising image of each), or `apart`, each pick far from the
earlier ones (select.pick: k-centre over the shortlist).

Strategies: `quality` (lowest estimated quality first: the model's own judge of its masks; a model
without an estimator falls back to `entropy` with a note), `entropy` (highest mean softmax
entropy first), `random` (seeded; reads only the images it draws, and no model unless `-o`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from segcli.errors import UserError
from segcli.infer.predictor import Predictor
from segcli.infer.select.output import check_output, write_head_start, write_lists
from segcli.infer.select.pick import Pick, choose, shortlist_size, why
from segcli.infer.select.pool import Candidate, Scored, score_pool
from segcli.infer.select.spread import spread

STRATEGIES = ("quality", "entropy", "random")
SPREADS = ("pool", "apart")
FORMATS = ("png", "coco")

Report = Callable[[Path, str], None]  # an unreadable pool image and why


@dataclass(frozen=True)
class SelectConfig:
    """The command's options (the inference options are applied to the Predictor beforehand)."""

    count: int
    strategy: str = "quality"
    diversity: bool = True
    seed: int = 0
    labeled: Optional[str] = None  # a dataset folder: pool images with a mask there are skipped
    output: Optional[str] = None  # -o DIR: images + suggested masks
    format: str = "png"  # of the suggested masks: png (masks/) or coco (annotations/*.json)
    spread: str = "pool"  # how diversity spreads the picks: in proportion to the pool, or apart

    def check(self) -> None:
        if self.count < 1:
            raise UserError(f"--count {self.count}: expected a number of images, 1 or more")
        if self.strategy not in STRATEGIES:
            raise UserError(f"--strategy {self.strategy}: expected one of {', '.join(STRATEGIES)}")
        if self.format not in FORMATS:
            raise UserError(f"--format {self.format}: expected png or coco")
        if self.spread not in SPREADS:
            raise UserError(f"--spread {self.spread}: expected one of {', '.join(SPREADS)}")
        if self.format != "png" and not self.output:
            raise UserError(f"--format {self.format} describes the masks written with -o DIR; pass -o")


@dataclass
class Selection:
    """What `select` found: the picks (one JSON-ready dict each, best first) and the pool's counts."""

    picked: list[dict[str, Any]]
    strategy: str  # what ranked the pool (entropy after the fallback)
    pool: int  # images ranked (random: the pool's size)
    skipped: int  # images already labelled
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    note: Optional[str] = None  # the fallback, when it happened
    target: str = "quality"  # mIoU or Dice: what the estimate estimates
    seconds: float = 0.0

    def summary(self, cfg: SelectConfig) -> dict[str, Any]:
        diverse = cfg.diversity and self.strategy != "random"
        return {"strategy": self.strategy, "diversity": diverse, "spread": cfg.spread if diverse else None,
                "seed": cfg.seed, "pool": self.pool, "already_labeled": self.skipped,
                "unreadable": [{"image": str(p), "error": e} for p, e in self.unreadable], "note": self.note}


def labelled_stems(data: str) -> set[str]:
    """The file stems of every image with a mask in a dataset folder (any layout segcli reads):
    the key segcli pairs images and masks by."""
    from segcli.data import discover

    splits = discover(data, 0.0, 0)
    return {s.image.stem for part in (splits.train, splits.val, splits.test) for s in part}


def _random(paths: list[Path], count: int, seed: int, in_channels: Optional[int], report: Report) -> list[Candidate]:
    """`count` readable images drawn without replacement (only the drawn images are read)."""
    from segcli.data.io import check_channels, read_image
    from segcli.errors import DataError

    picked: list[Candidate] = []
    for i in np.random.default_rng(seed).permutation(len(paths)):
        if len(picked) == count:
            break
        try:
            image = read_image(paths[i])
            if in_channels is not None:
                check_channels(image, in_channels, paths[i])
        except DataError as e:
            report(paths[i], str(e))
            continue
        picked.append(Candidate(paths[i], int(i), float(len(picked))))
    return picked


def run_select(cfg: SelectConfig, inputs: list[Path], load: Callable[[], Predictor], report: Report) -> Selection:
    """Rank the pool and pick `cfg.count` images; with `cfg.output`, write the head start.
    `load()` gives the configured Predictor (called only when a model is needed)."""
    cfg.check()
    out = Path(cfg.output) if cfg.output else None
    if out is not None:
        check_output(out)
    stems = labelled_stems(cfg.labeled) if cfg.labeled else set()
    pool = [p for p in inputs if p.stem not in stems]
    if not pool:
        raise UserError(f"every one of the {len(inputs)} pool image(s) has a mask in {cfg.labeled}; nothing to select")
    unreadable: list[tuple[Path, str]] = []

    def note_unreadable(path: Path, error: str) -> None:
        unreadable.append((path, error))
        report(path, error)

    predictor = load() if cfg.strategy != "random" or out is not None else None
    sel = Selection([], cfg.strategy, len(pool), len(inputs) - len(pool), unreadable)
    if predictor is not None:
        predictor = _prepare(predictor, sel)
    if sel.strategy == "random":
        channels = predictor.info.in_channels if predictor is not None else None
        picks = [Pick(c) for c in _random(pool, cfg.count, cfg.seed, channels, note_unreadable)]
        ranks = {id(p.cand): 0 for p in picks}
    else:
        assert predictor is not None
        picks, scored = _rank(predictor, pool, sel.strategy, cfg, note_unreadable)
        sel.pool, sel.seconds = len(scored.priorities), scored.seconds
        ranks = {id(p.cand): scored.pool_rank(p.cand) for p in picks}
    sel.picked = [_entry(n, p, sel, ranks[id(p.cand)], cfg.seed) for n, p in enumerate(picks, 1)]
    if out is not None:
        assert predictor is not None
        files = write_head_start(predictor, [p.cand.path for p in picks], out, cfg.format, note_unreadable)
        for entry, p in zip(sel.picked, picks):
            written = dict(files.get(p.cand.path, {}))
            q = written.pop("quality", None)
            if entry["estimate"] is None and q is not None:
                entry["estimate"] = q  # random picks: the estimate of the head-start pass
            entry.update(written)
        write_lists(out, sel.picked, sel.summary(cfg))
    return sel


def _rank(predictor: Predictor, pool: list[Path], strategy: str, cfg: SelectConfig,
          report: Report) -> tuple[list[Pick], Scored]:
    """Score the pool by `strategy` and pick: the shortlist's first, kept apart, or spread over the pool."""
    over_pool = cfg.diversity and cfg.spread == "pool"
    keep = 1 if over_pool else shortlist_size(cfg.count, cfg.diversity)
    scored = score_pool(predictor, pool, strategy, keep, report, table=over_pool)
    if not over_pool:
        return choose(scored.shortlist, cfg.count, cfg.diversity), scored
    t = scored.table
    assert t is not None
    nan_none = lambda v: None if np.isnan(v) else float(v)  # noqa: E731
    groups = spread(t, cfg.count, cfg.seed)
    picks = [Pick(Candidate(t.paths[g.row], g.row, t.priority[g.row], nan_none(t.estimate[g.row]),
                            nan_none(t.entropy[g.row])), g.distance, g.size)
             for g in groups]
    return picks, scored


def _prepare(predictor: Predictor, sel: Selection) -> Predictor:
    """Quality on whenever the model has an estimator (the estimate and error maps in every answer);
    without one, `quality` falls back to `entropy` with a note."""
    predictor = dataclasses.replace(predictor, quality=predictor.estimator is not None)
    if predictor.calibration is not None:
        sel.target = predictor.calibration.target
    if sel.strategy == "quality" and predictor.estimator is None:
        sel.strategy = "entropy"
        sel.note = f"{predictor.source} holds no quality estimator; ranking by entropy instead"
    return predictor


def _entry(n: int, pick: Pick, sel: Selection, pool_rank: int, seed: int) -> dict[str, Any]:
    c = pick.cand
    entry: dict[str, Any] = {"rank": n, "image": str(c.path), "estimate": c.estimate}
    if sel.strategy == "entropy":
        entry["entropy"] = c.entropy
    if sel.strategy != "random":
        entry["pool_rank"] = pool_rank
        entry["distance"] = pick.distance
    entry["why"] = why(pick, sel.strategy, pool_rank, sel.pool, sel.target, seed)
    return entry
