"""Which of the shortlisted images to label: the worst by the signal, kept diverse.

Diversity is a weighted k-centre greedy over the shortlist (the SHORTLIST x N most promising
images of the pool): the first pick is the most promising image; each next pick maximises

    weight(i) x distance(i, nearest image picked so far)

where weight(i) falls linearly from 1 (the most promising) to 1/M (the M-th; tied signals share
the better weight) and distance is between the images' fingerprints (segcli.infer.select.pool:
where each class is and where the model doubts). A copy or a near-copy of a picked image
(distance ~0) waits until nothing else is left; between images of equal signal the one farthest
from everything picked wins. The product needs no scale: it is unchanged when all distances are
multiplied by a constant, and the weights are ranks, whatever the estimate's calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from segcli.infer.select.pool import Candidate

SHORTLIST = 4  # with diversity, the picks come from the SHORTLIST x N most promising images


@dataclass
class Pick:
    cand: Candidate
    distance: Optional[float] = None  # to the nearest earlier pick (diversity only; None for the first)
    share: Optional[int] = None  # --spread pool: the pool images of the part it stands for


def shortlist_size(count: int, diversity: bool) -> int:
    return count * SHORTLIST if diversity else count


def rank_weights(priorities: np.ndarray) -> np.ndarray:
    """1 for the lowest priority down to 1/M for the M-th; ties share the better weight."""
    m = len(priorities)
    first = np.searchsorted(np.sort(priorities), priorities, side="left")
    return (m - first) / max(m, 1)


def choose(ranked: Sequence[Candidate], count: int, diversity: bool) -> list[Pick]:
    """`count` candidates of `ranked` (most promising first), never one twice."""
    if not diversity or len(ranked) <= 1:
        return [Pick(c) for c in ranked[:count]]
    x = np.stack([c.features for c in ranked]).astype(np.float64)
    w = rank_weights(np.array([c.priority for c in ranked], np.float64))
    taken = np.zeros(len(ranked), bool)
    taken[0] = True
    picks = [Pick(ranked[0])]
    nearest = np.linalg.norm(x - x[0], axis=1)
    while len(picks) < min(count, len(ranked)):
        score = np.where(taken, -1.0, w * nearest)
        i = int(np.argmax(score))  # ties: the earlier, i.e. more promising, one
        if score[i] <= 0:  # only copies of picked images are left: the most promising of them
            i = int(np.argmin(taken))
        taken[i] = True
        picks.append(Pick(ranked[i], round(float(nearest[i]), 4)))
        nearest = np.minimum(nearest, np.linalg.norm(x - x[i], axis=1))
    return picks


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def why(pick: Pick, strategy: str, pool_rank: int, pool: int, target: str, seed: int) -> str:
    """One sentence saying why this image was picked."""
    c = pick.cand
    if strategy == "random":
        return f"drawn at random (--seed {seed})"
    if strategy == "entropy":
        base = f"mean entropy {c.entropy:.4f}, the {ordinal(pool_rank)} highest of {pool}"
    else:
        base = f"estimated {target} {c.estimate:.4f}, the {ordinal(pool_rank)} lowest of {pool}"
    if pick.share is not None:
        return f"{base}; the most promising of {pick.share} similar pool image(s): its share of the pool"
    if pick.distance is None:
        return base
    return f"{base}; unlike the images picked before it (distance {pick.distance:.3f} to the nearest)"
