"""IoU tracking: gives each face a track id that persists across the frames of one source.

Greedy matching by IoU, highest first; a track that has not been matched for
`max_gap` updates ends. Sampling can be sparse (a few frames per minute), so a
track is only as good as the overlap between samples: faces that moved too far
simply start a new track, which the aggregate rule tolerates.

Example:
    >>> import numpy as np
    >>> t = IoUTracker()
    >>> t.update([np.array([0, 0, 10, 10.])]), t.update([np.array([1, 1, 11, 11.])])
    ([0], [0])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .retinaface import box_iou


@dataclass
class IoUTracker:
    """Assigns track ids to the boxes of successive frames of ONE source."""

    iou_threshold: float = 0.3
    max_gap: int = 5
    _boxes: dict[int, np.ndarray] = field(default_factory=dict)
    _age: dict[int, int] = field(default_factory=dict)
    _next_id: int = 0

    def update(self, boxes: list[np.ndarray] | np.ndarray) -> list[int]:
        """Match this frame's boxes to live tracks; returns one track id per box, in order."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = [-1] * len(boxes)
        live = list(self._boxes)
        if live and len(boxes):
            iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(np.stack([self._boxes[t] for t in live]))).numpy()
            for flat in np.argsort(-iou, axis=None):
                i, j = divmod(int(flat), len(live))
                if iou[i, j] < self.iou_threshold:
                    break
                if ids[i] == -1 and live[j] not in ids:
                    ids[i] = live[j]
        for i, box in enumerate(boxes):
            if ids[i] == -1:
                ids[i] = self._next_id
                self._next_id += 1
            self._boxes[ids[i]] = box
            self._age[ids[i]] = 0
        for t in list(self._boxes):
            if t not in ids:
                self._age[t] += 1
                if self._age[t] > self.max_gap:
                    del self._boxes[t], self._age[t]
        return ids
