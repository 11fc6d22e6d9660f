"""From per-face scores to a per-video verdict.

The rule, and why: a forged video usually forges one person, so the verdict
follows the MOST SUSPICIOUS TRACK, and a track's score is the MEAN OF ITS TOP-K
face scores (k=5 by default): a few confident frames are evidence, a single
spike is not, and averaging all frames would let long honest stretches dilute a
short forged one. Tracks with fewer than `min_track_faces` faces are ignored
when a longer track exists (detector flicker makes one-frame tracks). The video
is "fake" when its score is at least `threshold`, "real" otherwise, and
"no_face" when no face was scored. The threshold is the model's own (chosen on
its validation identities' real videos and stored in its checkpoint, see
`train/calibrate.py`) unless one is given; `DEFAULT_THRESHOLD` for a model without one.

Example:
    >>> import numpy as np
    >>> from facexray.contracts import Face, FaceScore
    >>> f = lambda t, p: FaceScore(Face(0, 0.0, np.zeros(4), 1.0, np.zeros((5, 2)), t), p)
    >>> s = aggregate_scores([f(0, 0.1), f(0, 0.2), f(1, 0.9), f(1, 0.7)], AggregateConfig(top_k=2, min_track_faces=1))
    >>> round(s.score, 2), s.verdict, s.worst_track
    (0.8, 'fake', 1)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .contracts import FaceScore

DEFAULT_THRESHOLD = 0.5
"""The verdict threshold of a model whose checkpoint records no calibrated one."""


@dataclass(frozen=True)
class AggregateConfig:
    """The verdict rule's knobs; the defaults here are the tool's defaults.

    `threshold` None: the model's calibrated threshold (`Pipeline` fills it in), else `DEFAULT_THRESHOLD`.
    """

    top_k: int = 5
    min_track_faces: int = 2
    threshold: float | None = None
    top_frames: int = 5


@dataclass
class Aggregate:
    """The outcome of the rule: score, verdict, per-track scores and the worst faces."""

    score: float | None
    verdict: str
    track_scores: dict[int, float] = field(default_factory=dict)
    worst_track: int | None = None
    top: list[FaceScore] = field(default_factory=list)


def track_score(probs: list[float] | np.ndarray, top_k: int) -> float:
    """Mean of the `top_k` highest face probabilities of one track."""
    p = np.sort(np.asarray(probs, np.float64))[::-1]
    return float(p[:max(1, top_k)].mean())


def aggregate_scores(scores: list[FaceScore], cfg: AggregateConfig = AggregateConfig()) -> Aggregate:
    """Apply the video rule (see module docstring) to every face scored in one video."""
    if not scores:
        return Aggregate(score=None, verdict="no_face")
    by_track: dict[int, list[float]] = defaultdict(list)
    for s in scores:
        by_track[s.face.track_id].append(s.prob)
    eligible = {t: p for t, p in by_track.items() if len(p) >= cfg.min_track_faces} or by_track
    track_scores = {t: track_score(p, cfg.top_k) for t, p in by_track.items()}
    worst = max(eligible, key=lambda t: track_scores[t])
    score = track_scores[worst]
    top = sorted(scores, key=lambda s: -s.prob)[:cfg.top_frames]
    threshold = DEFAULT_THRESHOLD if cfg.threshold is None else cfg.threshold
    return Aggregate(score=score, verdict="fake" if score >= threshold else "real",
                     track_scores=track_scores, worst_track=worst, top=top)
