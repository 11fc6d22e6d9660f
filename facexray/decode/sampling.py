"""Which frames of a video to hand out: the sample spec and the backend-neutral picking rules.

A detector does not need every frame of a one-hour file, and a live stream cannot be
scored at its full rate, so every reader takes a `SampleSpec`:

- `all`        every decoded frame;
- `every=K`    every K-th decoded frame (indices 0, K, 2K, ...);
- `uniform=N`  N frames spread evenly over the duration, found by seeking (see
               `uniform_targets` for the exact rule), so the cost does not grow with length;
- `fps=F`      frames at a target rate F, chosen by timestamp (first frame of each 1/F
               slot), decoding forward without seeking; right for live streams and VFR.

The spec has a text form used by the CLI and config files (`"uniform=32"`), and
`str(spec)` gives it back exactly: `SampleSpec.parse(str(spec)) == spec`.

Example:
    >>> spec = SampleSpec.parse("uniform=16")
    >>> spec.mode, spec.value, str(spec)
    ('uniform', 16, 'uniform=16')
    >>> uniform_targets(10.0, 4)
    [1.25, 3.75, 6.25, 8.75]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

Mode = Literal["all", "every", "uniform", "fps"]

DEFAULT_SAMPLE = "uniform=32"
"""The sample spec used when none is given: 32 frames spread over the whole video."""

_MODES: tuple[str, ...] = ("all", "every", "uniform", "fps")
_EXPECTED = "expected all, every=K, uniform=N or fps=F"


@dataclass(frozen=True)
class SampleSpec:
    """How to pick frames from a video; `value` is K (every), N (uniform), F (fps) or None (all).

    Build one with `SampleSpec.parse("every=5")` or directly, `SampleSpec("fps", 2.0)`;
    both validate, so a spec that exists is always usable.
    """

    mode: Mode
    value: int | float | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"unknown sample mode {self.mode!r}; {_EXPECTED}")
        if self.mode == "all":
            if self.value is not None:
                raise ValueError("sample mode 'all' takes no value")
            return
        if self.mode in ("every", "uniform"):
            v = self.value
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{self.mode}= needs a whole number >= 1, got {v!r}")
            return
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise ValueError(f"fps= needs a number > 0, got {self.value!r}")
        f = float(self.value)
        if not (math.isfinite(f) and f > 0):
            raise ValueError(f"fps= needs a number > 0, got {self.value!r}")
        object.__setattr__(self, "value", f)

    @classmethod
    def parse(cls, text: str) -> SampleSpec:
        """Read the text form: `all`, `every=K`, `uniform=N` or `fps=F` (case and spaces ignored)."""
        if not isinstance(text, str):
            raise TypeError(f"sample spec must be a string, got {type(text).__name__}")
        raw = text.strip().lower()
        mode, sep, arg = (part.strip() for part in raw.partition("="))
        if mode not in _MODES:
            raise ValueError(f"invalid sample spec {text!r}: {_EXPECTED}")
        if mode == "all":
            if sep:
                raise ValueError(f"invalid sample spec {text!r}: 'all' takes no value")
            return cls("all")
        if not arg:
            raise ValueError(f"invalid sample spec {text!r}: {mode}= needs a value; {_EXPECTED}")
        try:
            value: int | float = float(arg) if mode == "fps" else int(arg)
        except ValueError:
            kind = "a number" if mode == "fps" else "a whole number"
            raise ValueError(f"invalid sample spec {text!r}: {mode}= needs {kind}, got {arg!r}") from None
        try:
            return cls(mode, value)  # type: ignore[arg-type]
        except ValueError as e:
            raise ValueError(f"invalid sample spec {text!r}: {e}") from None

    @classmethod
    def coerce(cls, spec: SampleSpec | str) -> SampleSpec:
        """Accept either a spec or its text form (what public functions take)."""
        return spec if isinstance(spec, SampleSpec) else cls.parse(spec)

    def __str__(self) -> str:
        if self.mode == "all":
            return "all"
        v = self.value
        if self.mode == "fps" and float(v).is_integer():  # type: ignore[arg-type]
            return f"fps={int(v)}"  # type: ignore[arg-type]
        return f"{self.mode}={v!r}"


def uniform_targets(duration: float, n: int) -> list[float]:
    """The N target times (seconds from the first frame) of `uniform=N`: the centres of N equal slices.

    Centres rather than slice starts, so that N=1 gives the middle of the video and the
    first and last frames (often black fades) are not favoured. A reader returns, for
    each target t, the first frame with pts >= t - half a frame interval (the frame
    nearest to t), and never the same frame twice.
    """
    return [(i + 0.5) * duration / n for i in range(n)]


T = TypeVar("T")


class StrideReservoir(Generic[T]):
    """Keeps an evenly spaced subset of a sequence of unknown length in bounded memory.

    Used for `uniform=N` when a video's duration is unknown (raw streams, some WebM):
    every frame is decoded once, at most `2 * n` are held (decoded frames in their own
    pixel format, converted to RGB only when picked), and at the end `pick` chooses the
    N closest to the uniform targets. Positions are frame numbers, so the spacing is by
    frame count. Items are kept one stride apart and the stride doubles whenever the
    buffer fills, so it stays below the spacing of N uniform picks and each pick lies
    within about half a stride of its target.
    """

    def __init__(self, n: int):
        self.n = n
        self.stride = 1
        self.kept: list[tuple[float, T]] = []
        self._last_pos = -math.inf

    def offer(self, item: T, position: float) -> None:
        """Consider one item at `position` (its frame number); `position` must increase."""
        if position - self._last_pos < self.stride:
            return
        self.kept.append((position, item))
        self._last_pos = position
        if len(self.kept) >= 2 * self.n:
            self.kept = self.kept[::2]
            self.stride *= 2
            self._last_pos = self.kept[-1][0]

    def pick(self, targets: list[float]) -> list[T]:
        """The kept item nearest each target position, in order, without repeats."""
        if not self.kept:
            return []
        out: list[T] = []
        used: set[int] = set()
        positions = [p for p, _ in self.kept]
        for t in targets:
            j = min(range(len(positions)), key=lambda k: (abs(positions[k] - t), positions[k]))
            if j not in used:
                used.add(j)
                out.append(self.kept[j][1])
        return out


def pick_frames(pts: list[float], spec: SampleSpec) -> list[int]:
    """Indices of the frames `spec` picks from frames with these timestamps (seconds, increasing).

    The rules the video readers follow, for sources whose frames are all known up front
    (animated images): `every=K` takes indices 0, K, 2K...; `fps=F` the first frame of each
    1/F slot; `uniform=N` for each of `uniform_targets` the first frame with pts at or after
    the target less half a frame interval, never the same frame twice; a one-frame source
    gives its frame for any spec.
    """
    n = len(pts)
    if n <= 1 or spec.mode == "all":
        return list(range(n))
    if spec.mode == "every":
        return list(range(0, n, int(spec.value)))  # type: ignore[arg-type]
    if spec.mode == "fps":
        picked, next_t = [], -math.inf
        for i, t in enumerate(pts):
            if t >= next_t - 1e-6:
                picked.append(i)
                next_t = (math.floor(t * float(spec.value) + 1e-6) + 1) / float(spec.value)  # type: ignore[arg-type]
        return picked
    step = (pts[-1] - pts[0]) / (n - 1)
    duration = pts[-1] - pts[0] + step
    picked = []
    for target in uniform_targets(duration, int(spec.value)):  # type: ignore[arg-type]
        start = picked[-1] + 1 if picked else 0
        i = next((j for j in range(start, n) if pts[j] - pts[0] >= target - step / 2 - 1e-6), None)
        if i is not None:
            picked.append(i)
    return picked
