"""Pictures as sources: photos and animated WebP read like videos of their frames."""

import numpy as np
import pytest
from PIL import Image

from facexray.decode import SampleSpec, open_video, pick_frames
from facexray.errors import DecodeError
from facexray.scan import discover


def test_pick_frames_follows_the_video_rules():
    pts = [i * 0.1 for i in range(10)]
    pick = lambda s: pick_frames(pts, SampleSpec.parse(s))  # noqa: E731
    assert pick("all") == list(range(10))
    assert pick("every=3") == [0, 3, 6, 9]
    assert pick("fps=2") == [0, 5]
    assert pick("uniform=4") == [1, 4, 6, 9]            # nearest frames to 0.125, 0.375, 0.625, 0.875 s
    assert pick("uniform=50") == list(range(10))        # never the same frame twice
    assert pick_frames([0.0], SampleSpec.parse("uniform=8")) == [0]


def test_photo_is_one_upright_rgb_frame(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (255, 0, 0)                            # left half red
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6                                     # stored sideways: shown turned 90° clockwise
    img.save(tmp_path / "side.jpg", exif=exif, quality=95)
    img.save(tmp_path / "plain.png")
    with open_video(tmp_path / "plain.png", "uniform=32") as r:
        frames = list(r)
    assert len(frames) == 1 and frames[0].pts == 0.0 and np.array_equal(frames[0].image, rgb)
    assert r.info.frame_count == 1 and r.info.duration is None
    with open_video(tmp_path / "side.jpg", "all") as r:
        (frame,) = list(r)
    assert frame.image.shape == (60, 40, 3) and (r.info.width, r.info.height) == (40, 60)
    assert frame.image[5, 20, 0] > 200 and frame.image[55, 20, 0] < 60      # red half now on top


def test_animated_webp_is_sampled_by_its_frame_times(shared_dir):
    path = shared_dir / "data/labeled_dev/ghost_faceswap/examples__videos__orig.webp"
    if not path.exists():
        pytest.skip(f"{path} not found")
    with open_video(path, "all") as r:
        every = list(r)
    assert len(every) == r.info.frame_count > 10 and r.info.fps == pytest.approx(len(every) / r.info.duration)
    assert np.all(np.diff([f.pts for f in every]) > 0)
    assert len({f.image.tobytes() for f in every[:5]}) == 5                     # real, distinct frames
    with open_video(path, "uniform=8") as r:
        picked = list(r)
    assert [f.index for f in picked] == pick_frames([f.pts for f in every], SampleSpec.parse("uniform=8"))
    assert all(np.array_equal(f.image, every[f.index].image) for f in picked)


def test_broken_pictures_say_why(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not a picture")
    with pytest.raises(DecodeError, match="empty"):
        open_video(tmp_path / "empty.png")
    with pytest.raises(DecodeError, match="not a readable image"):
        open_video(tmp_path / "text.jpg")


def test_scan_discovers_pictures_too(tmp_path):
    for name in ("a.mp4", "b.JPG", "c.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in discover([tmp_path])] == ["a.mp4", "b.JPG", "c.webp"]
