"""Showing the evidence: annotated videos (`scan --annotate`, `explain`) and the HTML report (`scan --report`)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from facexray.cli import main
from facexray.contracts import Face, FaceScore
from facexray.engines.xray import load_xray
from facexray.faces.crop import CropSpec, crop_face
from facexray.faces.detect import RetinaFaceDetector
from facexray.pipeline import Pipeline, PipelineConfig
from facexray.report.annotate import AnnotateConfig, FaceTimeline, Mp4Writer, annotate
from facexray.report.draw import DrawnFace, draw_faces, drawn_region, heatmap, overlay

CLIPS = ("v_express/scripts__prepare_dataset__RD_Radio10_0_clip_0.mp4",  # 29.97 fps (30000/1001), 512²
         "ghost/examples__videos__dance.mp4")                             # 25 fps, 464×560
SAMPLE = "uniform=6"
BLOCK = 16  # H.264 macroblock: the codec spreads a change up to a block beyond the pixels drawn


def _decode(path) -> tuple[list[np.ndarray], list[float], float]:
    """Every frame (RGB), its pts in seconds, and the stream's average fps."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames, pts = [], []
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            pts.append(float(f.pts * s.time_base))
        return frames, [p - pts[0] for p in pts], float(s.average_rate)


def _block_means(diff: np.ndarray) -> np.ndarray:
    h, w = (diff.shape[0] // BLOCK) * BLOCK, (diff.shape[1] // BLOCK) * BLOCK
    return diff[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(1, 3))


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2).astype(np.float32)


@pytest.fixture(scope="module")
def scanned(shared_dir, models_dir, tmp_path_factory):
    """One `scan --annotate --report` of two real clips and a broken file (the CLI, as a user runs it)."""
    root = tmp_path_factory.mktemp("evidence")
    src = root / "in"
    src.mkdir()
    for clip in CLIPS:
        shutil.copy(shared_dir / "data/real_videos" / clip, src / Path(clip).name)
    (src / "broken.mp4").write_text("not a video\n")
    with pytest.MonkeyPatch.context() as mp:  # as conftest's fixtures do, for this module-wide scan
        mp.setenv("FACEXRAY_MODELS", str(models_dir))
        mp.setenv("FACEXRAY_CACHE", str(tmp_path_factory.getbasetemp() / "facexray-cache"))
        code = main(["scan", str(src), "--sample", SAMPLE, "--model", "random", "--out", str(root / "r.jsonl"),
                     "--annotate", str(root / "ann"), "--report", str(root / "report.html"), "-q"])
    records = [json.loads(line) for line in (root / "r.jsonl").read_text().splitlines()]
    return code, root, src, records


def test_draw_heatmap_and_overlay():
    ring = np.zeros((64, 64), np.float32)
    cv2.circle(ring, (32, 32), 20, 1.0, 3)
    hm = heatmap(ring)
    assert hm.shape == (64, 64, 3) and hm.dtype == np.uint8
    r, g, b = hm[32, 12].astype(int)
    assert r > 100 and g < 30 and b < 30                     # boundary: red
    r, g, b = hm[32, 32].astype(int)
    assert b > 100 and r < 30 and g < 30                     # no boundary: blue
    crop = np.full((256, 256, 3), 120, np.uint8)
    ov = overlay(crop, ring)
    assert (ov[128, 128] == crop[128, 128]).all()          # a zero map leaves the face as it is
    assert np.abs(ov[128, 48].astype(int) - 120).max() > 50  # on the boundary the colour shows


def test_drawn_xray_lands_where_the_crop_came_from():
    """The map drawn on the frame is the crop-space map warped back by the inverse of THE crop's warp."""
    spec = CropSpec()
    frame = np.zeros((400, 600, 3), np.uint8)
    lm = spec.template_points(180) + [200, 90]
    _, m = crop_face(frame, lm, spec)
    xray = np.zeros((64, 64), np.float32)
    xray[20:28, 36:44] = 1.0                                # a spot in crop coordinates
    face = DrawnFace(np.array([230.0, 140.0, 350.0, 280.0]), 0, 0.5, xray, m, spec.size)
    out = draw_faces(frame, [face])
    spot = np.array([[(36 + 44) / 2 * 4, (20 + 28) / 2 * 4]])  # its centre in 256-px crop pixels
    inv = cv2.invertAffineTransform(m)
    x, y = (spot @ inv[:, :2].T + inv[:, 2])[0]
    assert out[int(round(y)), int(round(x))].max() > 50
    no_box = DrawnFace(np.array([0.0, 0.0, 1.0, 1.0]), 0, 0.5, xray, m, spec.size)  # box and label out of the way
    back = crop_face(draw_faces(frame, [no_box]), lm, spec)[0]  # cutting the drawn frame again: the spot in place
    lit = np.argwhere(back.max(axis=2) > 20)
    assert 76 <= lit[:, 0].min() and lit[:, 0].max() <= 116 and 140 <= lit[:, 1].min() and lit[:, 1].max() <= 180
    x1, y1, x2, y2 = drawn_region(face, frame.shape)
    changed = np.argwhere(out.any(axis=2))
    assert changed[:, 0].min() >= y1 and changed[:, 0].max() < y2
    assert changed[:, 1].min() >= x1 and changed[:, 1].max() < x2


def _check_annotated(src: Path, out: Path, timeline: FaceTimeline, tol: float) -> dict:
    """Frame count, fps, and: outside the drawn regions (grown by a macroblock) a frame is the input."""
    a, a_pts, a_fps = _decode(src)
    b, _, b_fps = _decode(out)
    assert len(b) == len(a), "annotated video must keep every input frame"
    assert abs(b_fps - a_fps) < 1e-3, (b_fps, a_fps)
    assert b[0].shape == a[0].shape
    drawn_frames = blank_frames = 0
    for img_a, img_b, pts in zip(a, b, a_pts):
        block = _block_means(_abs_diff(img_a, img_b))
        mask = np.zeros(img_a.shape[:2], bool)
        faces = timeline.at(pts)
        for f in faces:
            x1, y1, x2, y2 = drawn_region(f, img_a.shape)
            mask[max(0, y1 - BLOCK):y2 + BLOCK, max(0, x1 - BLOCK):x2 + BLOCK] = True
        outside = ~_block_means(mask.astype(np.float32)).astype(bool)
        assert block[outside].max(initial=0) <= tol, f"frame at {pts:.3f} s changed outside its faces"
        if faces:
            drawn_frames += 1
            assert block[~outside].max() > 3 * tol, f"nothing drawn on the frame at {pts:.3f} s"
        else:
            blank_frames += 1
    return {"drawn": drawn_frames, "blank": blank_frames}


@pytest.mark.usefixtures("detector_weights")
def test_annotated_videos_keep_every_frame_and_change_only_faces(scanned, tmp_path):
    code, root, src, records = scanned
    assert code == 1  # the broken file: an error record, and the scan went on
    assert sorted(p.name for p in (root / "ann").iterdir()) == sorted(Path(c).stem + ".xray.mp4" for c in CLIPS)
    pipe = Pipeline(RetinaFaceDetector(), load_xray("random"), PipelineConfig(sample=SAMPLE))
    cfg = AnnotateConfig()
    for clip in CLIPS:
        video = src / Path(clip).name
        out = pipe.run(video)
        rec = next(r for r in records if r["path"] == str(video))
        assert rec["top_frames"] == out.result.top_frames  # the same faces as the scan's (deterministic)
        with av.open(str(root / "ann" / (video.stem + ".xray.mp4"))) as c:
            assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].format.name == "yuv420p"
        # codec noise, measured on an unannotated re-encode of the same frames with the same writer
        frames, _, fps = _decode(video)
        plain = Mp4Writer(tmp_path / "plain.mp4", frames[0].shape[1], frames[0].shape[0], fps, cfg.crf, cfg.preset)
        for f in frames:
            plain.write(f)
        plain.close()
        noise = max(_block_means(_abs_diff(x, y)).max() for x, y in zip(frames, _decode(tmp_path / "plain.mp4")[0]))
        tol = 1.5 * noise + 1.0
        seen = _check_annotated(video, root / "ann" / (video.stem + ".xray.mp4"),
                                FaceTimeline(out.scores, pipe.crop_spec, cfg.hold_s, fps), tol)
        assert seen["drawn"] == len(frames)  # 6 samples over ~2 s: every frame is within hold_s of a scored face
        if clip == CLIPS[0]:  # with a short hold, frames before the first scored face and after the last stay
            short = AnnotateConfig(hold_s=0.05)
            annotate(video, out.scores, tmp_path / "short.mp4", pipe.crop_spec, short)
            seen = _check_annotated(video, tmp_path / "short.mp4",
                                    FaceTimeline(out.scores, pipe.crop_spec, short.hold_s, fps), tol)
            assert seen["blank"] >= 2 and seen["drawn"] >= len(frames) // 2, seen


def test_a_track_is_drawn_for_its_whole_life_not_only_near_its_scored_frames():
    spec = CropSpec()
    lm = spec.template_points(60) + 100

    def score(pts: float, track: int) -> FaceScore:
        return FaceScore(Face(int(pts * 25), pts, np.array([90, 90, 170, 170.0]), 0.9, lm, track), 0.3)

    # uniform=32 over a 60-s video: a scored frame every 1.9 s, as the default sampling gives
    timeline = FaceTimeline([score(t, 0) for t in (1.0, 2.9, 4.8)] + [score(10.0, 1)], spec, hold_s=0.5, fps=25)
    drawn = [len(timeline.at(i / 25)) for i in range(25 * 12)]
    life = range(13, 133)                                                  # 0.5 s before the first to 0.5 s after the last
    assert all(drawn[i] >= 1 for i in life), "the box blinks between scored frames"
    assert drawn[int(7.0 * 25)] == 0 and drawn[int(0.3 * 25)] == 0      # before and after its life: nothing
    assert drawn[int(10.0 * 25)] == 1 and drawn[int(11.0 * 25)] == 0    # a one-face track: its frame ± 0.5 s


@pytest.mark.usefixtures("detector_weights")
def test_explain_image_writes_png_with_the_face_drawn(shared_dir, tmp_path, capsys):
    img = shared_dir / "data/labeled_dev/mesonet/test_images__df__df00204.jpg"
    out = tmp_path / "face.png"
    assert main(["explain", str(img), "--model", "random", "--out", str(out), "-q"]) == 0
    drawn = cv2.imread(str(out))
    original = cv2.imread(str(img))
    assert drawn.shape == original.shape
    assert np.abs(drawn.astype(int) - original).max() > 100   # box, label, map
    err = capsys.readouterr().err
    assert f"annotated: {out}" in err and "RANDOM" in err


# -- the HTML report, opened in a real headless Chromium ------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class DevTools:
    """A page in headless Chromium driven over the DevTools protocol (websocket): every event is kept."""

    def __init__(self, chromium: str, profile: Path):
        import websocket

        self.proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                      "--remote-debugging-port=0", "--window-size=1200,1600", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = profile / "DevToolsActivePort"  # Chromium writes its DevTools port here once listening
            deadline = time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text().strip()):
                assert self.proc.poll() is None and time.monotonic() < deadline, "Chromium did not start DevTools"
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
            self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise
        self.events: list[dict] = []
        self._id = 0

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                assert "error" not in msg, msg
                return msg["result"]
            self.events.append(msg)

    def wait_for(self, method: str) -> dict:
        while True:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return msg

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.mark.usefixtures("detector_weights")
def test_report_opens_in_chromium_with_every_image_and_no_errors(scanned, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("websocket", reason="websocket-client (the dev extra) talks to Chromium's DevTools")
    _, root, _, records = scanned
    page = root / "report.html"
    profile = tmp_path / "profile"
    profile.mkdir()
    dt = DevTools(chromium, profile)
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.call(f"{domain}.enable")
        dt.call("Emulation.setDeviceMetricsOverride", width=1200, height=1600, deviceScaleFactor=1, mobile=False)
        dt.call("Page.navigate", url=page.as_uri())
        dt.wait_for("Page.loadEventFired")
        facts = json.loads(dt.call("Runtime.evaluate", returnByValue=True, expression="""JSON.stringify({
            images: document.images.length,
            broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
            kinds: [...document.images].map(i => i.className),
            records: [...document.querySelectorAll('section.record')].map(s => [s.dataset.path, s.dataset.verdict]),
            banner: (document.querySelector('.banner') || {}).textContent || '',
            scripts: document.scripts.length})""")["result"]["value"])
        shot = dt.call("Page.captureScreenshot", format="png")["data"]
    finally:
        dt.close()
    png = tmp_path / "report.png"
    png.write_bytes(base64.b64decode(shot))
    errors = [e for e in dt.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
              or e.get("method") == "Network.loadingFailed"]
    assert not errors, errors
    requested = [e["params"]["request"]["url"] for e in dt.events if e.get("method") == "Network.requestWillBeSent"]
    assert all(u.startswith(("data:", page.as_uri())) for u in requested), requested  # self-contained
    assert facts["scripts"] == 0 and facts["broken"] == [], facts
    assert len(facts["records"]) == len(records) == 3                 # every record listed, errors included
    scored = sorted((r for r in records if r["score"] is not None), key=lambda r: -r["score"])
    assert facts["records"][:len(scored)] == [[r["path"], r["verdict"]] for r in scored]  # sorted by score
    assert facts["records"][-1] == [str(root / "in/broken.mp4"), "error"]
    assert "RANDOM" in facts["banner"]
    per_video = len(scored)
    assert facts["kinds"].count("timeline") == per_video
    assert facts["kinds"].count("crop") == facts["kinds"].count("xray") >= per_video
    image = cv2.imread(str(png))
    assert image is not None and image.shape[:2] == (1600, 1200)
    assert image.std() > 20 and (image < 250).mean() > 0.1             # not blank
