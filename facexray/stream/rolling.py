"""Rolling verdicts of a live stream and the alert rule; pure (times are passed in), so testable with synthetic times.

Live scores follow what is on screen now: a track's rolling score is the MEAN of its face
scores over the last `window_s` seconds (the offline top-k rule of `aggregate.py` would keep a
single old spike alive for the whole window). The stream's score is that of its most suspicious
track, as for a video. Per track, the alert rule is a small state machine:

    quiet ──score ≥ threshold──▶ pending ──held for min_duration_s──▶ ALERT (event "alert")
      ▲          │ score < threshold                                     │
      └──────────┘◀───────── score < threshold − hysteresis, or track gone (event "clear")

The hysteresis band keeps a score hovering at the threshold from firing alert after alert.

Example (a track scoring 0.9 every second; alert after 3 s above 0.5):
    >>> from facexray.stream.config import AlertConfig
    >>> r = RollingScores("cam", AlertConfig(threshold=0.5, min_duration_s=3, window_s=5))
    >>> [e.kind for t in range(5) for e in r.update(float(t), [(7, 0.9, None)])]
    ['alert']
    >>> [(e.kind, e.reason) for t in range(5, 12) for e in r.update(float(t), [(7, 0.1, None)])]
    [('clear', 'below')]
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .config import AlertConfig

_EPS = 1e-9  # seconds; sums of frame intervals fall short of the duration by float rounding


@dataclass
class AlertEvent:
    """An alert firing ("alert") or ending ("clear") for one track of one stream.

    `start` is when the track's rolling score first reached the threshold in this episode,
    `end` when the event happened (times on the caller's clock); `score` the rolling score at
    the event, `peak` the highest during the episode; `evidence` the payload given with the
    track's most suspicious face in the window (for images); `reason` why a clear happened
    ("below" the clear level, or "track_lost").
    """

    kind: str
    stream: str
    track: int
    start: float
    end: float
    score: float
    peak: float
    evidence: Any = None
    reason: str | None = None


class TrackWindow:
    """The face scores of one track over the last `window_s` seconds, and its most suspicious face."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()
        self._sum = 0.0
        self.best: tuple[float, float, Any] | None = None  # (prob, t, payload)
        self.last_t = float("-inf")

    def add(self, t: float, prob: float, payload: Any = None) -> None:
        self._samples.append((t, prob))
        self._sum += prob
        self.last_t = t
        if self.best is None or prob >= self.best[0] or self.best[1] < t - self.window_s:
            self.best = (prob, t, payload)

    def expire(self, now: float) -> None:
        """Forget samples older than the window (the best face too, once it is older)."""
        while self._samples and self._samples[0][0] < now - self.window_s:
            self._sum -= self._samples.popleft()[1]
        if not self._samples:
            self._sum = 0.0
        if self.best is not None and self.best[1] < now - self.window_s:
            self.best = None

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def score(self) -> float | None:
        return self._sum / len(self._samples) if self._samples else None


class AlertState:
    """The alert state machine of one track (see module docstring)."""

    def __init__(self, cfg: AlertConfig):
        self.cfg = cfg
        self.state = "quiet"  # quiet | pending | alert
        self.since = 0.0
        self.peak = 0.0

    def update(self, t: float, score: float) -> str | None:
        """Feed the rolling score at time `t`; returns "alert" or "clear" when one happens, else None."""
        cfg = self.cfg
        if self.state == "alert":
            self.peak = max(self.peak, score)
            if score < cfg.clear_below:
                self.state = "quiet"
                return "clear"
            return None
        if score < cfg.threshold:
            self.state = "quiet"
            return None
        if self.state == "quiet":
            self.state, self.since, self.peak = "pending", t, score
        self.peak = max(self.peak, score)
        if t - self.since >= cfg.min_duration_s - _EPS:
            self.state = "alert"
            return "alert"
        return None


class RollingScores:
    """Rolling track and stream scores of one stream, and its tracks' alerts."""

    def __init__(self, stream: str, cfg: AlertConfig):
        self.stream, self.cfg = stream, cfg
        self._tracks: dict[int, TrackWindow] = {}
        self._alerts: dict[int, AlertState] = {}

    def update(self, t: float, faces: list[tuple[int, float, Any]]) -> list[AlertEvent]:
        """Add one analysed frame's faces (track id, probability, payload) at time `t`; return alert events.

        Call it for frames without faces too: that is how tracks that left age out, and
        alerts on them clear.
        """
        for track, prob, payload in faces:
            self._tracks.setdefault(track, TrackWindow(self.cfg.window_s)).add(t, prob, payload)
            self._alerts.setdefault(track, AlertState(self.cfg))
        events: list[AlertEvent] = []
        for track in list(self._tracks):
            window, state = self._tracks[track], self._alerts[track]
            window.expire(t)
            if not len(window):
                if state.state == "alert":
                    events.append(self._event("clear", track, t, 0.0, reason="track_lost"))
                del self._tracks[track], self._alerts[track]
                continue
            if window.last_t != t:
                continue  # not seen in this frame: its score is unchanged, so is its state
            kind = state.update(t, window.score)
            if kind:
                events.append(self._event(kind, track, t, window.score, reason="below" if kind == "clear" else None))
        return events

    def close(self, t: float, reason: str = "shutdown") -> list[AlertEvent]:
        """Clear every open alert (the watch stops watching); the state is forgotten."""
        events = [self._event("clear", k, t, self._tracks[k].score or 0.0, reason) for k in self.alerting]
        self._tracks.clear()
        self._alerts.clear()
        return events

    def _event(self, kind: str, track: int, t: float, score: float, reason: str | None) -> AlertEvent:
        state, window = self._alerts[track], self._tracks[track]
        evidence = window.best[2] if window.best else None
        return AlertEvent(kind, self.stream, track, state.since, t, score, state.peak, evidence, reason)

    @property
    def track_scores(self) -> dict[int, float]:
        """Rolling score of every track seen within the window."""
        return {k: w.score for k, w in self._tracks.items() if w.score is not None}

    @property
    def score(self) -> float | None:
        """The stream's rolling score: its most suspicious track's, None when no face is in the window."""
        return max(self.track_scores.values(), default=None)

    @property
    def alerting(self) -> list[int]:
        return [k for k, s in self._alerts.items() if s.state == "alert"]
