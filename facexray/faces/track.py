"""Face tracking: gives each face a track id that persists across the sampled frames of one source.

Sampling may be dense (every frame, a live stream at a few fps) or sparse (`uniform=16` over a
long video: frames seconds apart). Box overlap (IoU) links faces of neighbouring frames well
but fails when frames are seconds apart: a talking head that moved by half a face no longer
overlaps, and every sampled face became a track of its own. So a face is linked to a track by
the first of two rules that holds, best match first:

1. IoU with the track's last box at least `iou_threshold` (dense sampling), or
2. what still holds seconds later: the centre moved at most `max_shift` face sizes, the face
   size changed by at most `max_scale`×, and the 5 landmarks keep their geometry (their
   positions relative to the box, in face sizes, moved by at most `max_shape` on average),
   so that a face does not take over the track of a neighbour.

Matching is greedy (IoU pairs first, highest first; then shape pairs, closest first); a track
that is not matched for `max_gap` updates ends. The verdict is the most suspicious track's
score, so fewer fragments also means fewer chances for a false alarm (README, "How the verdict
is made", has the tracks per video before and after).

Example:
    >>> import numpy as np
    >>> t = FaceTracker()
    >>> t.update([np.array([0, 0, 10, 10.])]), t.update([np.array([1, 1, 11, 11.])])
    ([0], [0])
    >>> t.update([np.array([8, 0, 18, 10.])])     # moved by 0.8 face: no overlap to speak of, same face
    [0]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), boxes as x1, y1, x2, y2: an (N, M) array."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _size(boxes: np.ndarray) -> np.ndarray:
    """A face's size: the geometric mean of its box's sides, in pixels."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clip(1e-6)
    return np.sqrt(wh[:, 0] * wh[:, 1])


def _shape(boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The landmarks relative to their box's centre, in face sizes: (N, 5, 2), comparable across frames."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return (landmarks - centre[:, None, :]) / _size(boxes)[:, None, None]


@dataclass
class FaceTracker:
    """Assigns track ids to the faces of successive sampled frames of ONE source (see module docstring)."""

    iou_threshold: float = 0.3
    max_shift: float = 1.0
    max_scale: float = 1.5
    max_shape: float = 0.2
    max_gap: int = 5
    _boxes: dict[int, np.ndarray] = field(default_factory=dict)
    _shapes: dict[int, np.ndarray | None] = field(default_factory=dict)
    _age: dict[int, int] = field(default_factory=dict)
    _next_id: int = 0

    def update(self, boxes: list[np.ndarray] | np.ndarray, landmarks: np.ndarray | None = None) -> list[int]:
        """Match this frame's faces to live tracks; returns one track id per box, in order.

        `landmarks` (N, 5, 2), when given, lets faces whose boxes no longer overlap be linked (rule 2).
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        shapes = None if landmarks is None else _shape(boxes, np.asarray(landmarks, np.float64).reshape(-1, 5, 2))
        ids = [-1] * len(boxes)
        live = list(self._boxes)
        if live and len(boxes):
            taken: set[int] = set()
            for i, j in self._candidates(boxes, shapes, live):
                if ids[i] == -1 and j not in taken:
                    ids[i] = live[j]
                    taken.add(j)
        for i, box in enumerate(boxes):
            if ids[i] == -1:
                ids[i] = self._next_id
                self._next_id += 1
            self._boxes[ids[i]] = box
            self._shapes[ids[i]] = None if shapes is None else shapes[i]
            self._age[ids[i]] = 0
        for t in list(self._boxes):
            if t not in ids:
                self._age[t] += 1
                if self._age[t] > self.max_gap:
                    del self._boxes[t], self._shapes[t], self._age[t]
        return ids

    def _candidates(self, boxes: np.ndarray, shapes: np.ndarray | None, live: list[int]) -> list[tuple[int, int]]:
        """(face, track) pairs that may be linked, best first: IoU pairs by IoU, then shape pairs by distance."""
        old = np.stack([self._boxes[t] for t in live])
        iou = box_iou_np(boxes, old)
        pairs = [(0, -iou[i, j], i, j) for i, j in zip(*np.nonzero(iou >= self.iou_threshold))]
        old_shapes = [self._shapes[t] for t in live]
        if shapes is not None and any(s is not None for s in old_shapes):
            size_new, size_old = _size(boxes), _size(old)
            mean_size = (size_new[:, None] + size_old[None, :]) / 2
            centre_new, centre_old = (boxes[:, :2] + boxes[:, 2:]) / 2, (old[:, :2] + old[:, 2:]) / 2
            shift = np.linalg.norm(centre_new[:, None] - centre_old[None], axis=-1) / mean_size
            scale = np.maximum(size_new[:, None] / size_old[None, :], size_old[None, :] / size_new[:, None])
            for i, j in zip(*np.nonzero((iou < self.iou_threshold) & (shift <= self.max_shift)
                                        & (scale <= self.max_scale))):
                if old_shapes[j] is None:
                    continue
                shape = float(np.linalg.norm(shapes[i] - old_shapes[j], axis=-1).mean())
                if shape <= self.max_shape:
                    pairs.append((1, shift[i, j] + shape, i, j))
        return [(int(i), int(j)) for _, _, i, j in sorted(pairs)]
