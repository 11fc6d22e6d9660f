"""PyAV (FFmpeg, CPU) backend: open a file or URL, decode, sample, and hand out upright RGB `Frame`s.

What it guarantees, and why:

- Frames are RGB uint8 HWC, C-contiguous, turned upright from the stream's display
  matrix (phones store portrait video sideways; a sideways face is a missed face).
  Mirroring flags in the matrix are ignored: a mirrored face is still a face.
- `Frame.pts` is seconds from the first frame, taken from each frame's own timestamp,
  so variable-frame-rate video is timed correctly. `Frame.index` is the frame's position
  in the stream (presentation order, counting frames that were skipped or lost to bad
  packets); for `uniform=N`, which seeks, it is round(pts * fps), raised where needed to
  stay above the previous frame's (a variable-frame-rate clip's nominal fps can round two
  neighbouring frames to one number, and frames are told apart by it downstream).
- Bad data never ends a read early without a trace: a packet the decoder rejects is
  skipped and counted (`stats["corrupt_packets"]`), an error-concealed frame is dropped
  and counted (`stats["corrupt_frames"]`: concealment blocks look like the blending seams
  the X-ray model looks for), a read error ends the stream and is counted
  (`stats["read_errors"]`). An input that cannot be opened, has no video stream, or gives
  no frame at all raises `DecodeError` with a short reason, at `open_video` time: the
  first frame is decoded there (which is also how the rotation is learnt).
- `uniform=N` seeks: for each target it seeks to the keyframe before it and decodes
  forward, but keeps decoding instead when no keyframe lies between the current position
  and the target (the keyframe index says so), so targets sharing a GOP cost one pass.
  Frames before a target that no later frame depends on (non-reference frames) are not
  decoded at all (FFmpeg's `skip_frame=nonref`, chosen packet by packet from the packet's
  pts), so the picked frames are bit-identical to those of a full decode. `fps=F` uses
  the same per-packet skipping. When the duration is unknown, `uniform=N` decodes
  everything once and picks from a bounded, evenly thinned buffer
  (`sampling.StrideReservoir`: at most 2N decoded frames held).
- On a local file, `uniform=N` with 8 to 64 targets decodes its two halves at once, on
  two containers: the chains of frames that lead to each target (a whole GOP, with a
  keyframe every 10 s) are serial work, and two chains keep two cores busy. Frames still
  come out in order; the later half is held until the first is handed out (at most 32).
- `VideoInfo.frame_count` is only an estimate; the container's frame count is never used
  for sampling (an MP4 edit list can make it count samples that are never shown).

Example:
    >>> with open_video("clip.mp4", "uniform=8") as video:  # doctest: +SKIP
    ...     print(video.info.width, video.info.height)
    ...     images = [f.image for f in video]
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import math
import re
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from facexray.contracts import Frame
from facexray.decode.info import VideoInfo, new_stats
from facexray.decode.sampling import DEFAULT_SAMPLE, SampleSpec, StrideReservoir, uniform_targets
from facexray.decode.still import ImageReader, is_image_path, missing_reason
from facexray.errors import DecodeError

NETWORK_TIMEOUT_S = 10.0
"""Open and read timeout for network sources (PyAV's interrupt timeout and the protocol's own)."""

_FALLBACK_FPS = 25.0  # FFmpeg's own assumption for streams that carry no timing
_BLIND_FORWARD_S = 2.0  # with no keyframe index: decode forward rather than seek when this close
_EPS = 1e-6  # seconds; absorbs float rounding when comparing pts with targets
PARALLEL_TARGETS = (8, 64)  # uniform=N decodes its two halves at once when N is in this range (local files)
_TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}  # FFmpeg's tty demuxers turn any text file or page into these
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

DecodedFrame = tuple[int, "av.VideoFrame"]  # (position in decoder output, frame)


def open_video(
    source: str | Path,
    sample: SampleSpec | str = DEFAULT_SAMPLE,
    threads: int = 0,
    options: dict[str, str] | None = None,
    timeout: tuple[float, float] | None = None,
) -> VideoReader | ImageReader:
    """Open a local file or a URL (http, https, rtsp, ...) for reading sampled frames.

    `sample` is a `SampleSpec` or its text (`"all"`, `"every=5"`, `"uniform=32"`, `"fps=2"`).
    `threads` is the decoder's thread count (0: FFmpeg chooses). `options` are FFmpeg
    demuxer/protocol options, added to the defaults for network sources (rtsp: TCP
    transport; all: a 10 s socket timeout, in microseconds as FFmpeg wants). `timeout`
    (open, read) in seconds bounds how long opening and any one read of a network source may
    block (default `NETWORK_TIMEOUT_S` for both; the read timeout is also the protocol's socket
    timeout, which is what ends a read from an RTSP server that went silent): a read that
    blocks longer ends the stream with a read error instead of hanging, which is what a live
    source's stall watchdog relies on.
    Raises `DecodeError` when the input cannot be opened or gives no frame, and
    `ValueError` for a bad sample spec. A live stream has no duration, so `uniform=N` on it
    would only return when the stream ends: use `fps=F` or `every=K` for live sources.
    A local picture (`still.IMAGE_EXTENSIONS`: photos, animated WebP) opens as an
    `ImageReader`, which reads like a video of its frames.
    """
    if is_image_path(source):
        return ImageReader(source, sample)
    return VideoReader(source, sample, threads=threads, options=options, timeout=timeout)


def unreadable(source: str | Path) -> str | None:
    """Why a local file cannot be scored (the `DecodeError` reason: missing, empty, not a video, no decodable
    frame), or None when it opens and its first frame decodes. One open and one frame: cheap next to scoring
    it, so a scan can report such files before it loads any model."""
    try:
        with open_video(source, "all"):
            return None
    except DecodeError as e:
        return e.reason


class VideoReader:
    """An open video: iterate it once for `Frame`s; use it as a context manager to close it.

    `info` (`VideoInfo`) is filled at open time. `stats` counts, as reading goes:
    `decoded` (frames the decoder produced), `yielded` (frames handed out),
    `corrupt_packets` (packets the decoder rejected, skipped), `corrupt_frames`
    (error-concealed frames, dropped), `read_errors` (reads that failed and ended the
    stream), `seeks`, and `last_error` (the last FFmpeg message, or None).
    """

    def __init__(
        self,
        source: str | Path,
        sample: SampleSpec | str = DEFAULT_SAMPLE,
        *,
        threads: int = 0,
        options: dict[str, str] | None = None,
        parallel: bool = True,
        timeout: tuple[float, float] | None = None,
    ):
        self.source_id = str(source)
        self._threads, self._options, self._parallel = threads, options, parallel
        self.spec = SampleSpec.coerce(sample)
        self.stats: dict[str, Any] = new_stats()
        self._started = False
        self._seekable = True
        self._skip_before: int | None = None  # pts: packets before it need not decode non-reference frames
        self._skip_mode = "DEFAULT"
        self._origin: int | None = None  # pts of the first frame: where Frame.pts counts from
        self._position = 0  # stream position (index) of the next frame to come out
        self._packet_pts: list[int] = []  # heap: pts of demuxed packets whose frame has not come out yet
        self._index_size = -1  # size of the demuxer index when _keyframes was read from it
        self._keyframes: list[float] = []
        self._indexed_until = -math.inf
        # One converter for the whole read (it keeps its swscale context between frames), single-threaded:
        # per-call thread start-up costs more than it saves for one frame, and readers run side by side.
        self._rgb = VideoReformatter()
        self._container = _open_container(self.source_id, options, timeout)
        try:
            self.info = self._probe(threads)
        except BaseException:
            self._container.close()
            raise

    def _probe(self, threads: int) -> VideoInfo:
        """Set up the decoder and decode the first frame: proves the input is decodable, gives rotation and size."""
        container = self._container
        if not container.streams.video:
            raise DecodeError(self.source_id, "no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DecodeError(self.source_id, "unsupported video codec")
        if stream.codec_context.name in _TEXT_CODECS:
            raise DecodeError(self.source_id, "not a video file (text, which FFmpeg would render as ANSI art)")
        self._stream = stream
        self._cc = stream.codec_context
        self._cc.thread_type = "AUTO"
        self._cc.thread_count = threads
        self._tb: Fraction = stream.time_base
        self._tb_float = float(self._tb)

        frames = self._decode_packets()
        first = next(frames, None)
        if first is None:
            reason = "truncated or corrupt: no frame could be decoded"
            if self.stats["last_error"]:
                reason += f" ({self.stats['last_error']})"
            raise DecodeError(self.source_id, reason)
        self._frames: Iterator[DecodedFrame] = itertools.chain([first], frames)
        frame = first[1]

        fps = _frame_rate(stream)
        self._fps = fps or _FALLBACK_FPS
        self._seek_margin = (self._cc.reorder_depth + 1) / self._fps
        duration = _duration(stream, container)
        if duration and fps:
            frame_count: int | None = round(duration * fps)
        else:
            frame_count = stream.frames or None
        turns = _quarter_turns(frame.rotation)
        width, height = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
        return VideoInfo(
            width=width,
            height=height,
            fps=fps,
            duration=duration,
            frame_count=frame_count,
            codec=self._cc.name,
            pix_fmt=frame.format.name,
            rotation=(-90 * turns) % 360,
        )

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file or connection (safe to call twice)."""
        self._container.close()

    def __iter__(self) -> Iterator[Frame]:
        """The sampled frames, in presentation order. A reader can be iterated once."""
        if self._started:
            raise RuntimeError("a VideoReader can be iterated only once; open the video again")
        self._started = True
        mode, value = self.spec.mode, self.spec.value
        if mode == "all":
            return self._every(1)
        if mode == "every":
            return self._every(int(value))  # type: ignore[arg-type]
        if mode == "fps":
            return self._at_rate(float(value))  # type: ignore[arg-type]
        if self.info.duration:
            return self._uniform_by_seeking(int(value), self.info.duration)  # type: ignore[arg-type]
        return self._uniform_by_scanning(int(value))  # type: ignore[arg-type]

    # -- sampling modes -------------------------------------------------------------

    def _every(self, k: int) -> Iterator[Frame]:
        for idx, frame in self._frames:
            if idx % k == 0:
                yield self._to_frame(idx, self._seconds(idx, frame), frame)

    def _at_rate(self, rate: float) -> Iterator[Frame]:
        """The first frame of each 1/rate slot of pts; frames in slots already served are skipped."""
        next_t = -math.inf
        for idx, frame in self._frames:
            t = self._seconds(idx, frame)
            if t < next_t - _EPS:
                continue
            yield self._to_frame(idx, t, frame)
            next_t = (math.floor(t * rate + _EPS) + 1) / rate
            self._skip_before = self._ticks(next_t - _EPS)

    def _uniform_by_seeking(self, n: int, duration: float) -> Iterator[Frame]:
        """For each target (see `uniform_targets`) the first frame with pts >= target - half a frame."""
        targets = uniform_targets(duration, n)
        lo, hi = PARALLEL_TARGETS
        if self._parallel and lo <= len(targets) <= hi and _url_scheme(self.source_id) is None:
            return self._targets_in_parallel(targets)
        return self._targets(targets)

    def _targets(self, targets: list[float]) -> Iterator[Frame]:
        half = 0.5 / self._fps
        pos = 0.0  # pts of the last frame decoded
        last_t = -math.inf  # pts of the last frame handed out
        last_index = -1
        for target in targets:
            start = target - half
            if last_t >= start - _EPS:
                continue  # more targets than frames: this one is served by the last frame
            if self._should_seek(pos, start):
                self._seek(start)
            self._skip_before = self._ticks(start - _EPS)
            for idx, frame in self._frames:
                pos = self._seconds(idx, frame)
                if pos >= start - _EPS:
                    last_t = pos
                    last_index = max(round(pos * self._fps), last_index + 1)
                    yield self._to_frame(last_index, pos, frame)
                    break
            else:
                return  # the data ended before this target; later targets lie beyond it too

    def _targets_in_parallel(self, targets: list[float]) -> Iterator[Frame]:
        """The first half of `targets` from this container, the second from another, decoded at the same time."""
        split = len(targets) // 2
        other = VideoReader(self.source_id, self.spec, threads=self._threads, options=self._options, parallel=False)
        later: list[Frame] = []
        failed: list[BaseException] = []

        def work() -> None:
            try:
                later.extend(other._targets(targets[split:]))
            except BaseException as e:  # re-raised in the reading thread
                failed.append(e)

        worker = threading.Thread(target=work, daemon=True, name="facexray-decode-half")
        worker.start()
        last_t, last_index = -math.inf, -1
        try:
            for frame in self._targets(targets[:split]):
                last_t, last_index = frame.pts, frame.index
                yield frame
        finally:
            worker.join()
            other.close()
            for key in ("decoded", "corrupt_packets", "corrupt_frames", "read_errors", "seeks"):
                self.stats[key] += other.stats[key]
            self.stats["last_error"] = self.stats["last_error"] or other.stats["last_error"]
        if failed:
            raise failed[0]
        for frame in later:
            if frame.pts > last_t + _EPS:
                self.stats["yielded"] += 1
                last_index = max(frame.index, last_index + 1)   # numbered apart from the first half's
                yield dataclasses.replace(frame, index=last_index)

    def _uniform_by_scanning(self, n: int) -> Iterator[Frame]:
        """`uniform=N` without a known duration: decode all once, keep an evenly thinned subset, pick N."""
        reservoir: StrideReservoir[DecodedFrame] = StrideReservoir(n)
        count = 0
        for idx, frame in self._frames:
            reservoir.offer((idx, frame), idx)
            count = idx + 1
        for idx, frame in reservoir.pick(uniform_targets(float(count), n)):
            yield self._to_frame(idx, self._seconds(idx, frame), frame)

    # -- seeking ----------------------------------------------------------------------

    def _index(self) -> tuple[list[float], float]:
        """Known keyframe times and how far the demuxer's index reaches (seconds from the first frame).

        MP4 indexes every sample up front; Matroska loads its cues at the first seek; MPEG-TS
        and raw streams index keyframes as they are read. So the index is re-read whenever
        it has grown. MP4 indexes by decode time, a few frames before presentation time;
        that only makes the seek-or-continue choice slightly conservative, never wrong.
        """
        entries = self._stream.index_entries
        if len(entries) != self._index_size:
            self._index_size = len(entries)
            times = [((e.timestamp - self._origin) * self._tb_float, e.is_keyframe and not e.is_discard) for e in entries]
            self._keyframes = sorted(t for t, key in times if key)
            self._indexed_until = max((t for t, _ in times), default=-math.inf)
        return self._keyframes, self._indexed_until

    def _should_seek(self, pos: float, start: float) -> bool:
        """Seek only when it skips work: a keyframe lies after `pos` and before where the seek would land.

        Where the index does not reach, seek if the target is more than `_BLIND_FORWARD_S` ahead.
        """
        if not self._seekable:
            return False
        seek_to = start - self._seek_margin
        if seek_to <= pos:
            return False
        keyframes, indexed_until = self._index()
        i = bisect.bisect_right(keyframes, seek_to)
        if i > 0 and keyframes[i - 1] > pos:
            return True
        if seek_to <= indexed_until:
            return False
        return seek_to - pos > _BLIND_FORWARD_S

    def _seek(self, start: float) -> None:
        """Seek to the keyframe before `start` and restart decoding there.

        The seek aims a little before `start` (the decoder's reorder depth plus a frame),
        because MP4 seeks by decode time and a keyframe's decode time is earlier than its
        presentation time. If the first frame still lands after `start`, frames the target
        might need were jumped over, so it seeks again further back.
        """
        back = self._seek_margin
        for _ in range(3):
            ts = self._ticks(start - back)
            try:
                self._container.seek(ts, stream=self._stream, backward=True, any_frame=False)
            except av.error.FFmpegError as e:
                self.stats["last_error"] = _message(e)
                self._seekable = False  # decode forward from where we are instead
                return
            self.stats["seeks"] += 1
            self._packet_pts.clear()  # positions are not tracked across seeks (uniform=N uses pts * fps)
            frames = self._decode_packets()
            first = next(frames, None)
            if first is None:
                self._frames = iter(())
                return
            self._frames = itertools.chain([first], frames)
            landed = self._seconds(*first)
            if landed <= start + _EPS or ts <= self._origin:
                return
            back = 2 * back + (landed - start)

    # -- decoding -----------------------------------------------------------------------

    def _decode_packets(self) -> Iterator[DecodedFrame]:
        """Demux and decode from the current read position; skip and count what cannot be decoded."""
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.error.FFmpegError, OSError) as e:
                self._count("read_errors", e)
                packet = None  # drain the frames the decoder still holds, then stop
            if packet is not None and packet.pts is not None:
                heapq.heappush(self._packet_pts, packet.pts)
                self._set_skip(packet.pts)
            try:
                frames = self._cc.decode(packet)
            except av.error.FFmpegError as e:
                self._count("corrupt_packets", e)
                frames = []
            for frame in frames:
                idx = self._index_of(frame)
                self.stats["decoded"] += 1
                if frame.is_corrupt:
                    self._count("corrupt_frames")
                    continue
                yield idx, frame
            if packet is None:
                return

    def _index_of(self, frame: av.VideoFrame) -> int:
        """The frame's position in the stream, counting frames that were skipped, lost to bad packets or dropped.

        Frames come out in pts order, after every packet with an earlier pts has gone in, so the
        packets with a smaller pts still waiting in the heap are the frames that never came out.
        Packets before the first frame (cut by an MP4 edit list) do not count.
        """
        if self._origin is None:
            self._origin = frame.pts if frame.pts is not None else 0
        heap = self._packet_pts
        if frame.pts is not None:
            while heap and heap[0] < frame.pts:
                if heapq.heappop(heap) >= self._origin:
                    self._position += 1
            if heap and heap[0] == frame.pts:
                heapq.heappop(heap)
        idx = self._position
        self._position += 1
        return idx

    def _set_skip(self, pts: int | None) -> None:
        """Let the decoder drop non-reference frames of packets that come before the next wanted pts."""
        skip = self._skip_before is not None and pts is not None and pts < self._skip_before
        mode = "NONREF" if skip else "DEFAULT"
        if mode != self._skip_mode:
            self._cc.skip_frame = mode
            self._skip_mode = mode

    def _count(self, key: str, error: Exception | None = None) -> None:
        self.stats[key] += 1
        if error is not None:
            self.stats["last_error"] = _message(error)

    def _seconds(self, idx: int, frame: av.VideoFrame) -> float:
        """Presentation time from the first frame; streams without timestamps count frames at the nominal rate."""
        if frame.pts is None:
            return idx / self._fps
        return (frame.pts - self._origin) * self._tb_float

    def _ticks(self, seconds: float) -> int:
        """Stream timestamp (time_base units) of `seconds` from the first frame, rounded down."""
        return self._origin + math.floor(seconds * self._tb.denominator / self._tb.numerator)

    def _to_frame(self, idx: int, t: float, frame: av.VideoFrame) -> Frame:
        image = self._rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
        turns = _quarter_turns(frame.rotation)
        if turns:
            image = np.rot90(image, turns)
        self.stats["yielded"] += 1
        return Frame(source_id=self.source_id, index=idx, pts=t, image=np.ascontiguousarray(image))


# -- opening ------------------------------------------------------------------------------


def _open_container(source_id: str, options: dict[str, str] | None,
                    timeout: tuple[float, float] | None = None) -> av.container.InputContainer:
    """av.open with the checks that turn FFmpeg's errors into reasons a user can act on."""
    scheme = _url_scheme(source_id)
    path = Path(source_id)
    if scheme is None:
        if not path.exists():
            raise DecodeError(source_id, missing_reason(path))
        if path.is_dir():
            raise DecodeError(source_id, "is a directory, not a video file")
        if path.stat().st_size == 0:
            raise DecodeError(source_id, "file is empty (0 bytes)")
    timeout = timeout or (NETWORK_TIMEOUT_S, NETWORK_TIMEOUT_S)
    container_options = {**default_options(source_id, timeout[1]), **(options or {})}
    try:
        return av.open(
            source_id,
            mode="r",
            container_options=container_options,
            timeout=timeout if scheme else None,
        )
    except FileNotFoundError:
        raise DecodeError(source_id, "file not found") from None
    except PermissionError:
        raise DecodeError(source_id, "permission denied") from None
    except av.error.InvalidDataError:
        if scheme is None and _looks_like_mp4(path):
            raise DecodeError(source_id, "truncated or corrupt: MP4 index (moov box) unreadable") from None
        raise DecodeError(source_id, "not a video file (invalid data found when processing input)") from None
    except (av.error.FFmpegError, OSError) as e:
        raise DecodeError(source_id, f"cannot open ({_message(e)})") from None


def default_options(source: str, timeout_s: float = NETWORK_TIMEOUT_S) -> dict[str, str]:
    """FFmpeg options used for a source unless overridden: for network sources a socket timeout, TCP for RTSP."""
    scheme = _url_scheme(source)
    if scheme in ("rtsp", "rtsps"):
        return {"rtsp_transport": "tcp", "timeout": str(int(timeout_s * 1e6))}
    if scheme in ("http", "https", "tcp", "rtmp", "rtmps"):
        return {"timeout": str(int(timeout_s * 1e6))}
    return {}


def _url_scheme(source: str) -> str | None:
    """The lower-cased scheme of a URL ("rtsp", "http", ...), None for a local path."""
    m = _URL.match(source)
    return m.group(1).lower() if m else None


def _looks_like_mp4(path: Path) -> bool:
    """ISO media files (mp4, mov, m4v, 3gp) start with an `ftyp` box."""
    with path.open("rb") as f:
        return f.read(8)[4:8] == b"ftyp"


def _message(error: Exception) -> str:
    return str(getattr(error, "strerror", None) or error)


# -- stream properties ---------------------------------------------------------------------


def _frame_rate(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return None


def _duration(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> float | None:
    """The video stream's own duration, else the container's (which may include a longer audio track)."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _quarter_turns(rotation: int) -> int:
    """Counter-clockwise quarter turns (0-3) for np.rot90, from PyAV's `VideoFrame.rotation` (counter-clockwise degrees)."""
    return round(rotation / 90) % 4
