"""Decoding (PyAV backend): sample specs, pixel formats, rotation, VFR timing, sampling modes,
seeking correctness against a full decode, bad inputs, URLs, and real clips.

Synthetic clips are written with PyAV itself into tmp_path. Each frame carries an orientation
mark (a white block in the top-left corner of the stored picture) and its frame number as a
8-bit barcode in the bottom half, so tests can check which frame came out and which way up.
"""

from __future__ import annotations

import functools
import http.server
import math
import struct
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from facexray.contracts import Frame
from facexray.decode import DEFAULT_SAMPLE, SampleSpec, VideoInfo, default_options, open_video, uniform_targets
from facexray.decode.sampling import StrideReservoir
from facexray.errors import DecodeError

W, H, N_FRAMES, FPS = 64, 48, 30, 25
IPHONE_PORTRAIT = [0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30]  # QuickTime matrix of a portrait phone clip


def _picture(i: int, w: int = W, h: int = H) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 3, : w // 3] = 255
    for bit in range(8):
        if i >> bit & 1:
            img[h // 2 :, bit * w // 8 : (bit + 1) * w // 8] = 200
    return img


def _number(image: np.ndarray) -> int:
    """Read back the barcode of an upright, unrotated picture."""
    h, w = image.shape[:2]
    bottom = image[h // 2 + 2 : h - 2].mean(axis=(0, 2))
    return sum(1 << b for b in range(8) if bottom[b * w // 8 + 2 : (b + 1) * w // 8 - 2].mean() > 100)


def make_video(
    path: Path,
    n: int = N_FRAMES,
    *,
    w: int = W,
    h: int = H,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fmt: str | None = None,
    rotation: int | None = None,
    matrix: list[int] | None = None,
    pts_ms: list[int] | None = None,
    options: dict[str, str] | None = None,
    picture=_picture,
) -> Path:
    """Encode `n` frames of `picture(i)`; `pts_ms` gives custom timestamps (VFR) in milliseconds."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=FPS, options=options or {})
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if matrix is not None:
            stream.set_display_matrix(matrix)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(picture(i, w, h), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def read(path, sample="all", **kw) -> tuple[list[Frame], VideoInfo, dict]:
    with open_video(path, sample, **kw) as video:
        frames = list(video)
        return frames, video.info, dict(video.stats)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """30 frames, 64x48, 25 fps, H.264."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4")


def real(shared_dir: Path, name: str) -> Path:
    return shared_dir / "data/real_videos" / name


# --- sample specs ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["all", "every=3", "uniform=16", "fps=2", "fps=0.5", "fps=29.97", DEFAULT_SAMPLE])
def test_sample_spec_round_trips(text):
    spec = SampleSpec.parse(text)
    assert str(spec) == text
    assert SampleSpec.parse(str(spec)) == spec


def test_sample_spec_parse_normalises_and_coerces():
    assert SampleSpec.parse("  Uniform = 8 ") == SampleSpec("uniform", 8)
    assert SampleSpec.parse("fps=2") == SampleSpec("fps", 2.0)
    assert SampleSpec.coerce("every=4") == SampleSpec("every", 4)
    spec = SampleSpec("all")
    assert SampleSpec.coerce(spec) is spec
    assert DEFAULT_SAMPLE == "uniform=32"


@pytest.mark.parametrize(
    "text",
    ["", "uniform", "uniform=", "uniform=0", "uniform=-3", "uniform=2.5", "every=x", "every=0", "fps=0",
     "fps=-1", "fps=nan", "fps=inf", "all=3", "sometimes=3", "uniform=16=2"],
)
def test_sample_spec_rejects_bad_text(text):
    with pytest.raises(ValueError, match="sample spec"):
        SampleSpec.parse(text)


def test_sample_spec_constructor_validates():
    for mode, value in [("every", 0), ("uniform", 2.5), ("uniform", True), ("fps", 0), ("all", 3), ("most", 1)]:
        with pytest.raises(ValueError):
            SampleSpec(mode, value)


def test_open_video_rejects_a_bad_spec_before_opening(tmp_path):
    with pytest.raises(ValueError, match="sample spec"):
        open_video(tmp_path / "missing.mp4", "uniform=zero")


def test_uniform_targets_are_slice_centres():
    assert uniform_targets(10.0, 4) == [1.25, 3.75, 6.25, 8.75]
    assert uniform_targets(6.0, 1) == [3.0]


def test_stride_reservoir_is_bounded_and_covers_the_sequence():
    res: StrideReservoir[int] = StrideReservoir(10)
    for i in range(1000):
        res.offer(i, i)
        assert len(res.kept) < 20
    targets = uniform_targets(1000.0, 10)
    picked = res.pick(targets)
    assert len(picked) == 10 and picked == sorted(set(picked))
    assert all(abs(p - t) <= res.stride / 2 for p, t in zip(picked, targets))


# --- pixels: formats, colour order, sizes, rotation -------------------------------------------


@pytest.mark.parametrize(
    "codec,pix_fmt,suffix",
    [("libx264", "yuv420p", "mp4"), ("libx264", "yuv444p", "mp4"), ("libx264", "yuv420p10le", "mp4"),
     ("mpeg4", "yuv420p", "mp4"), ("ffv1", "yuv420p", "mkv")],
)
def test_red_comes_out_red_in_every_pixel_format(tmp_path, codec, pix_fmt, suffix):
    def red(i, w, h):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = 255
        return img

    path = make_video(tmp_path / f"red.{suffix}", codec=codec, pix_fmt=pix_fmt, picture=red)
    frames, info, stats = read(path)
    assert info.pix_fmt == pix_fmt and info.codec == {"libx264": "h264"}.get(codec, codec)
    assert len(frames) == N_FRAMES == stats["decoded"] == stats["yielded"]
    for f in frames:
        img = f.image
        assert img.shape == (H, W, 3) and img.dtype == np.uint8 and img.flags["C_CONTIGUOUS"]
        assert img[..., 0].min() > 200 and img[..., 1].max() < 60 and img[..., 2].max() < 60
        assert f.source_id == str(path)


def test_gray_video_becomes_three_equal_channels(tmp_path):
    path = make_video(tmp_path / "gray.mkv", codec="ffv1", pix_fmt="gray")
    frames, info, _ = read(path)
    assert info.pix_fmt == "gray" and len(frames) == N_FRAMES
    img = frames[7].image
    assert img.shape == (H, W, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert img[0, 0, 0] > 240 and _number(img) == 7


@pytest.mark.parametrize("codec,pix_fmt,suffix", [("ffv1", "yuv420p", "mkv"), ("libx264", "yuv444p", "mp4")])
def test_odd_sizes(tmp_path, codec, pix_fmt, suffix):
    path = make_video(tmp_path / f"odd.{suffix}", w=65, h=49, codec=codec, pix_fmt=pix_fmt)
    frames, info, _ = read(path)
    assert (info.width, info.height) == (65, 49)
    assert [f.image.shape for f in frames] == [(49, 65, 3)] * N_FRAMES
    assert all(f.image.flags["C_CONTIGUOUS"] for f in frames)
    assert [_number(f.image) for f in frames] == list(range(N_FRAMES))


def _bright_corner(img: np.ndarray) -> str:
    h, w = img.shape[:2]
    corners = {"top-left": img[:4, :4], "top-right": img[:4, -4:], "bottom-left": img[-4:, :4], "bottom-right": img[-4:, -4:]}
    (name,) = [k for k, v in corners.items() if v.mean() > 200]
    return name


@pytest.mark.parametrize(
    "kw,corner,rotation",
    [
        ({}, "top-left", 0),
        ({"rotation": 90}, "bottom-left", 270),  # display matrix: turn 90 degrees counter-clockwise
        ({"rotation": -90}, "top-right", 90),  # turn 90 degrees clockwise
        ({"rotation": 180}, "bottom-right", 180),
        ({"matrix": IPHONE_PORTRAIT}, "top-right", 90),  # a portrait phone clip is turned clockwise
    ],
)
def test_rotation_metadata_is_honoured(tmp_path, kw, corner, rotation):
    path = make_video(tmp_path / "rot.mp4", **kw)
    for sample in ("all", "uniform=3"):
        frames, info, _ = read(path, sample)
        assert info.rotation == rotation
        quarter = rotation in (90, 270)
        assert (info.width, info.height) == ((H, W) if quarter else (W, H))
        for f in frames:
            assert f.image.shape == (info.height, info.width, 3) and f.image.flags["C_CONTIGUOUS"]
            assert _bright_corner(f.image) == corner
            upright = np.rot90(f.image, {0: 0, 90: 1, 180: 2, 270: 3}[rotation])  # undo the clockwise turn
            assert _number(upright) == f.index


# --- timing and sampling modes -----------------------------------------------------------------


def test_all_frames_have_index_and_pts(clip):
    frames, info, _ = read(clip)
    assert [f.index for f in frames] == list(range(N_FRAMES))
    assert [_number(f.image) for f in frames] == list(range(N_FRAMES))
    assert [f.pts for f in frames] == pytest.approx([i / FPS for i in range(N_FRAMES)])
    assert info == VideoInfo(W, H, 25.0, pytest.approx(1.2), 30, "h264", "yuv420p", 0)


VFR_MS = [0, 40, 80, 200, 210, 220, 500, 540, 580, 620] + [700 + 33 * i for i in range(20)]


def test_variable_frame_rate_uses_each_frames_pts(tmp_path):
    path = make_video(tmp_path / "vfr.mp4", pts_ms=VFR_MS)
    frames, info, _ = read(path)
    assert [f.pts for f in frames] == pytest.approx([t / 1000 for t in VFR_MS], abs=1e-6)
    assert all(a.pts < b.pts for a, b in zip(frames, frames[1:]))
    assert [_number(f.image) for f in frames] == list(range(N_FRAMES))
    assert info.fps != pytest.approx(FPS)  # the average rate, not the encoder's nominal one


@pytest.mark.parametrize("rate", [1.0, 4.0, 10.0])
def test_fps_sampling_on_vfr_picks_the_first_frame_of_each_slot(tmp_path, rate):
    path = make_video(tmp_path / "vfr.mp4", pts_ms=VFR_MS)
    frames, _, _ = read(path, f"fps={rate:g}")
    expected, last_slot = [], -1
    for i, ms in enumerate(VFR_MS):
        if math.floor(ms / 1000 * rate + 1e-9) > last_slot:
            expected.append(i)
            last_slot = math.floor(ms / 1000 * rate + 1e-9)
    assert [f.index for f in frames] == expected
    assert [_number(f.image) for f in frames] == expected


@pytest.mark.parametrize("k,expected", [(1, list(range(30))), (4, [0, 4, 8, 12, 16, 20, 24, 28]), (100, [0])])
def test_every_k(clip, k, expected):
    frames, _, stats = read(clip, f"every={k}")
    assert [f.index for f in frames] == expected
    assert [_number(f.image) for f in frames] == expected
    assert stats["decoded"] == N_FRAMES and stats["yielded"] == len(expected)


@pytest.mark.parametrize("rate,expected", [(5, [0, 5, 10, 15, 20, 25]), (1, [0, 25]), (50, list(range(30)))])
def test_fps_on_constant_rate(clip, rate, expected):
    frames, _, _ = read(clip, f"fps={rate}")
    assert [_number(f.image) for f in frames] == expected
    assert [f.pts for f in frames] == pytest.approx([i / FPS for i in expected])


@pytest.mark.parametrize(
    "n,expected", [(1, [15]), (5, [3, 9, 15, 21, 27]), (30, list(range(30))), (100, list(range(30)))]
)
def test_uniform_counts_and_positions(clip, n, expected):
    frames, _, _ = read(clip, f"uniform={n}")
    assert [f.index for f in frames] == expected
    assert [_number(f.image) for f in frames] == expected


def _expected_uniform(full: list[Frame], duration: float, n: int, fps: float) -> list[Frame]:
    """The documented rule, computed from a full decode: for each slice centre t, the first frame
    with pts >= t - half a frame interval, never the same frame twice."""
    out: list[Frame] = []
    for t in uniform_targets(duration, n):
        match = next((f for f in full if f.pts >= t - 0.5 / fps - 1e-6), None)
        if match is None:
            break
        if not out or match.pts > out[-1].pts:
            out.append(match)
    return out


def _assert_same_frames(got: list[Frame], want: list[Frame]) -> None:
    assert [f.pts for f in got] == pytest.approx([f.pts for f in want], abs=1e-6)
    for g, w in zip(got, want):
        assert np.array_equal(g.image, w.image), f"frame at {g.pts:.3f}s differs from the full decode"


@pytest.mark.parametrize(
    "name,codec,options,indexed",
    [
        ("gop.mp4", "libx264", {}, True),
        ("open_gop.mov", "libx264", {"x264-params": "open-gop=1"}, True),  # lands late without the seek margin
        ("gop.avi", "mpeg4", {"bf": "2"}, True),  # AVI seeks by decode time: lands late without the margin
        ("gop.ts", "libx264", {}, False),  # indexed while read; needs the retry
        ("gop.mkv", "libx264", {}, False),  # cues are loaded at the first seek
    ],
)
def test_uniform_seeking_gives_exactly_the_frames_of_a_full_decode(tmp_path, name, codec, options, indexed):
    """150 frames (6 s), a keyframe every 12 frames, B-frames: every N from 1 to 40 must pick the
    same frames, bit for bit, as the rule applied to a full decode."""
    path = make_video(tmp_path / name, 150, codec=codec, options={"g": "12", "bf": "3", **options})
    full, info, _ = read(path)
    assert len(full) == 150
    for n in range(1, 41):
        got, _, stats = read(path, f"uniform={n}")
        _assert_same_frames(got, _expected_uniform(full, info.duration, n, info.fps))
        assert [f.index for f in got] == [_number(f.image) for f in got]
        if indexed:
            assert stats["seeks"] <= n, "a seek had to be retried: the seek margin is missing"
        if indexed and n <= 8:
            assert stats["seeks"] >= 1 and stats["decoded"] < 150 * 0.5, stats


def test_uniform_without_a_duration_scans_once_and_spreads_the_picks(tmp_path):
    path = make_video(tmp_path / "raw.h264", fmt="h264")  # a raw stream: no duration, no timestamps
    frames, info, stats = read(path, "uniform=5")
    assert info.duration is None and info.frame_count is None
    assert stats["seeks"] == 0 and stats["decoded"] == N_FRAMES
    idx = [f.index for f in frames]
    assert len(idx) == 5 and idx == sorted(set(idx))
    assert all(abs(i - t) <= 3 for i, t in zip(idx, uniform_targets(30.0, 5)))  # within half a slice of N=5
    assert [_number(f.image) for f in frames] == idx
    assert [f.pts for f in frames] == pytest.approx([i / FPS for i in idx])


# --- bad input ---------------------------------------------------------------------------------


def _reason(path) -> str:
    with pytest.raises(DecodeError) as e:
        open_video(path, "all")
    assert e.value.source == str(path)
    return e.value.reason


def test_missing_empty_text_and_directory_inputs(tmp_path):
    assert _reason(tmp_path / "nope.mp4") == "file not found"
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _reason(tmp_path / "empty.mp4") == "file is empty (0 bytes)"
    (tmp_path / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    assert _reason(tmp_path / "notes.mp4") == "not a video file (invalid data found when processing input)"
    assert _reason(tmp_path) == "is a directory, not a video file"


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    assert _reason(path) == "no video stream"


def test_corrupt_packets_are_skipped_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    path = make_video(tmp_path / "noise.mp4", 60, options={"g": "10"},
                      picture=lambda i, w, h: rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    for k in (15, 33):
        pos, size = packets[k]
        data[pos : pos + size] = b"\x00" * size
    path.write_bytes(bytes(data))
    frames, _, stats = read(path)
    assert stats["corrupt_packets"] == 2 and stats["last_error"]
    assert [f.index for f in frames] == [i for i in range(60) if i not in (15, 33)]
    assert [f.pts for f in frames] == pytest.approx([f.index / FPS for f in frames])


def _mdat_payload_offset(path: Path) -> int:
    """Where the frame data starts in an MP4 whose index (moov) precedes it."""
    data, pos, boxes = path.read_bytes(), 0, {}
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        boxes[kind] = (pos, pos + size)
        pos += size
    assert boxes[b"moov"][0] < boxes[b"mdat"][0]
    return boxes[b"mdat"][0] + 8


def test_truncated_mp4_with_index_first_gives_the_frames_before_the_cut(shared_dir, tmp_path):
    src = real(shared_dir, "tpsmm/assets__driving.mp4")  # moov before mdat, 169 frames
    full, info, _ = read(src)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.3)])
    frames, cut_info, stats = read(cut)
    assert cut_info.duration == info.duration  # the index still describes the whole clip
    assert 0.2 * len(full) < len(frames) < 0.35 * len(full)
    assert all(a.pts < b.pts for a, b in zip(frames, frames[1:]))
    _assert_same_frames(frames, full[: len(frames)])
    sampled, _, _ = read(cut, "uniform=8")  # targets past the cut are not found and do not fail
    assert 1 <= len(sampled) < 8 and sampled[-1].pts <= frames[-1].pts


def test_truncated_mp4_without_frames_or_index(shared_dir, tmp_path):
    src = real(shared_dir, "tpsmm/assets__driving.mp4")
    mdat_data = _mdat_payload_offset(src)
    head = tmp_path / "head.mp4"
    head.write_bytes(src.read_bytes()[: mdat_data + 64])  # index intact, no complete frame
    assert _reason(head).startswith("truncated or corrupt: no frame could be decoded")
    tail_index = real(shared_dir, "dpe/data__d.mp4")  # moov after mdat: cut it off
    cut = tmp_path / "no_index.mp4"
    cut.write_bytes(tail_index.read_bytes()[: int(tail_index.stat().st_size * 0.3)])
    assert _reason(cut).startswith("truncated or corrupt")


# --- URLs and options ----------------------------------------------------------------------------


def test_http_url(clip):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{clip.name}"
        frames, info, _ = read(url, "every=10")
        assert [_number(f.image) for f in frames] == [0, 10, 20] and frames[0].source_id == url
        assert info.frame_count == N_FRAMES
        with pytest.raises(DecodeError, match="cannot open"):
            open_video(f"http://127.0.0.1:{server.server_port}/missing.mp4")
    finally:
        server.shutdown()
        server.server_close()


def test_network_defaults():
    assert default_options("rtsp://cam.local/stream") == {"rtsp_transport": "tcp", "timeout": "10000000"}
    assert default_options("https://example.org/a.mp4") == {"timeout": "10000000"}
    assert default_options("/videos/a.mp4") == {}


def test_reader_is_iterated_once_and_closes(clip):
    video = open_video(clip, "all")
    assert len(list(video)) == N_FRAMES
    with pytest.raises(RuntimeError, match="only once"):
        iter(video)
    video.close()
    video.close()


# --- real clips ----------------------------------------------------------------------------------


def test_container_frame_count_is_not_trusted(shared_dir):
    """This MP4's track holds 158 samples but its edit list shows 55 (2.19 s); PyAV's stream.frames says 158."""
    path = real(shared_dir, "3ddfa/demo_obama__obama.mp4")
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 158
    full, info, _ = read(path)
    assert len(full) == 55 == info.frame_count
    got, _, _ = read(path, "uniform=8")
    _assert_same_frames(got, _expected_uniform(full, info.duration, 8, info.fps))


@pytest.mark.parametrize(
    "name,n,max_share",
    [
        ("dpe/data__d.mp4", 6, 0.35),  # MPEG-4 part 2, keyframe every 12 frames
        ("edtalk/test_data__pose_source2.mp4", 8, 0.75),  # H.264 with B-frames, keyframe every 250
    ],
)
def test_uniform_on_real_clips_decodes_less_and_matches_a_full_decode(shared_dir, name, n, max_share):
    path = real(shared_dir, name)
    full, info, full_stats = read(path)
    got, _, stats = read(path, f"uniform={n}")
    assert len(got) == n
    _assert_same_frames(got, _expected_uniform(full, info.duration, n, info.fps))
    assert stats["decoded"] < max_share * full_stats["decoded"], (stats, full_stats)


@pytest.mark.parametrize("n", [64, 100])   # two containers at once (8 to 64 targets), and one
def test_uniform_numbers_frames_apart_on_a_variable_frame_rate_clip(shared_dir, n):
    """This clip's frames come 1/30 s apart with gaps, so its nominal 22.1 fps rounds two neighbours
    (0.567 s and 0.600 s) to one number: each picked frame must still get a number of its own."""
    path = real(shared_dir, "video_retalking/examples__face__1.mp4")
    full, info, _ = read(path)
    got, _, _ = read(path, f"uniform={n}")
    _assert_same_frames(got, _expected_uniform(full, info.duration, n, info.fps))
    assert len({round(f.pts * info.fps) for f in got}) < len(got)            # pts × fps alone collides here
    idx = [f.index for f in got]
    assert idx == sorted(set(idx))
    assert all(abs(i - f.pts * info.fps) <= 3 for i, f in zip(idx, got))     # still about pts × fps


def test_every_real_clip_opens_with_sane_info_and_frames(shared_dir):
    paths = sorted((shared_dir / "data/real_videos").glob("*/*.mp4"))
    assert paths
    for path in paths:
        frames, info, stats = read(path, "uniform=3")
        assert info.width > 0 and info.height > 0 and info.fps > 0 and info.duration > 0, path
        assert len(frames) == 3, (path, stats)
        for f in frames:
            assert f.image.shape == (info.height, info.width, 3), path
            assert 0 <= f.pts <= info.duration, path
