"""The scan report: one self-contained HTML file, readable from disk with no server and no JavaScript.

It lists every scanned file, most suspicious first (files with no face, then errors,
come last). Each video shows its verdict and score, one score-over-time plot per track
(matplotlib, Agg) and its most suspicious face crops, each beside its X-ray map. All
images are inline (base64 `data:` URIs); the page loads nothing else. A warning carried
by the records (e.g. `--model random`) is shown as a banner at the top.

Memory stays bounded however many files a scan holds: each file's section is rendered
as soon as the file is scanned and parked in a temporary folder beside the report; only
(score, verdict, path) per file stays in memory until `close` writes the page.

Example:
    >>> with HtmlReport("report.html", crop_spec) as report:       # doctest: +SKIP
    ...     out = pipeline.run("clip.mp4")
    ...     report.add(out.result, out.scores, cut_crops("clip.mp4", report.top_faces(out.scores), crop_spec))
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..aggregate import DEFAULT_THRESHOLD
from ..contracts import FaceScore, Frame, VideoResult
from ..decode import open_video
from ..faces.crop import CropSpec, crop_face
from .draw import heatmap

_PTS_MATCH_S = 1e-3  # a scored face's frame is the decoded frame with the same pts (same reader arithmetic)


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows; these defaults are the tool's defaults."""

    top_faces: int = 4
    thumb: int = 120
    max_tracks_plotted: int = 6
    threshold: float = DEFAULT_THRESHOLD     # the scan sets the one its verdicts used
    title: str = "facexray scan report"


class CropCutter:
    """Re-cuts the crops of chosen faces (by THE crop function) as the frames they were scored on go by."""

    def __init__(self, faces: list[FaceScore], crop_spec: CropSpec):
        self.faces = faces
        self.crop_spec = crop_spec
        self.crops: list[np.ndarray | None] = [None] * len(faces)
        self._last_pts = max((f.face.pts for f in faces), default=-1.0)

    @property
    def done(self) -> bool:
        return all(c is not None for c in self.crops)

    def offer(self, frame: Frame) -> None:
        """Cut every wanted face that was scored on this frame."""
        for i, f in enumerate(self.faces):
            if self.crops[i] is None and abs(f.face.pts - frame.pts) < _PTS_MATCH_S:
                self.crops[i] = crop_face(frame.image, f.face.landmarks, self.crop_spec)[0]

    def past_last(self, frame: Frame) -> bool:
        return frame.pts > self._last_pts + _PTS_MATCH_S


def cut_crops(source: str | Path, faces: list[FaceScore], crop_spec: CropSpec) -> list[np.ndarray | None]:
    """The crops of `faces`, re-cut from a decode of `source` that stops after the last of their frames.

    A face whose frame is not found again (the file changed since) gets None.
    """
    cutter = CropCutter(faces, crop_spec)
    if faces:
        with open_video(source, "all") as video:
            for frame in video:
                cutter.offer(frame)
                if cutter.done or cutter.past_last(frame):
                    break
    return cutter.crops


def _data_uri(image: np.ndarray, fmt: str = ".png") -> str:
    """An RGB uint8 image as a `data:` URI (PNG, or JPEG for photos)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 88] if fmt == ".jpg" else []
    ok, buf = cv2.imencode(fmt, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"could not encode an image as {fmt}")
    mime = "image/jpeg" if fmt == ".jpg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.tobytes()).decode('ascii')}"


def _png_uri(fig: Figure) -> str:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return _data_uri(np.ascontiguousarray(rgba[..., :3]))


def timeline_plot(series: dict[int, list[tuple[float, float]]], track_scores: dict[int, float],
                  cfg: ReportConfig = ReportConfig(), duration: float | None = None) -> str:
    """Score over time, one small plot per track (most suspicious first), as a PNG `data:` URI.

    `series` maps a track id to its (pts, prob) points; the time axis spans `duration` when known.
    """
    order = sorted(series, key=lambda t: -track_scores.get(t, 0.0))[:cfg.max_tracks_plotted]
    fig = Figure(figsize=(7.0, 0.4 + 1.1 * len(order)), dpi=100)
    axes = fig.subplots(len(order), 1, sharex=True, squeeze=False)[:, 0]
    for ax, t in zip(axes, order):
        pts, probs = zip(*sorted(series[t]))
        ax.plot(pts, probs, "o-", ms=3, lw=1.2, color="#c0392b" if track_scores.get(t, 0) >= cfg.threshold
                else "#2471a3")
        ax.axhline(cfg.threshold, color="#888", lw=0.8, ls="--")
        ax.set_ylim(-0.03, 1.03)
        ax.set_yticks([0, 0.5, 1])
        ax.tick_params(labelsize=7)
        ax.set_ylabel(f"#{t}\n{track_scores.get(t, 0):.2f}", rotation=0, ha="right", va="center", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time in video (s)", fontsize=8)
    if duration:
        axes[-1].set_xlim(0.0, duration)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.97, bottom=0.35 / (0.4 + 1.1 * len(order)) + 0.05, hspace=0.15)
    return _png_uri(fig)


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} .sub{color:#555;margin-top:0}
.banner{background:#fdecea;border:2px solid #c0392b;color:#7b1d12;padding:.8em 1em;font-weight:600;margin:1em 0}
table{border-collapse:collapse;font-size:.9em} td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.record{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;margin:1em 0}
.record h2{font-size:1.05em;margin:.2em 0;word-break:break-all}
.badge{display:inline-block;padding:.1em .5em;border-radius:4px;color:#fff;font-size:.85em;margin-right:.4em}
.fake{background:#c0392b} .real{background:#1e8449} .no_face{background:#7f8c8d} .error{background:#6c3483}
.meta{color:#444;font-size:.9em;margin:.3em 0} .warn{color:#a04000;font-size:.9em}
.faces{display:flex;flex-wrap:wrap;gap:.8em} figure{margin:0;text-align:center}
figure img{border:1px solid #999} figcaption{font-size:.8em;color:#444}
.errmsg{font-family:monospace;font-size:.85em;white-space:pre-wrap}
"""


@dataclass
class _Entry:
    key: tuple
    verdict: str
    score: float | None
    path: str
    anchor: str
    fragment: Path | None = None
    error: str | None = None


@dataclass
class HtmlReport:
    """Collects scanned files (`add`) and writes the report page on `close` (atomically: temp file, rename)."""

    path: str | Path
    crop_spec: CropSpec
    cfg: ReportConfig = field(default_factory=ReportConfig)
    about: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=".facexray-report-", dir=self.path.parent))
        self._entries: list[_Entry] = []
        self._warnings: Counter = Counter()
        self._started = time.strftime("%Y-%m-%d %H:%M:%S")

    def top_faces(self, scores: list[FaceScore]) -> list[FaceScore]:
        """The faces the report shows crops of: the `top_faces` highest scores, earliest first on ties."""
        return sorted(scores, key=lambda s: (-s.prob, s.face.pts))[:self.cfg.top_faces]

    def add(self, result: VideoResult, scores: list[FaceScore], crops: list[np.ndarray | None]) -> None:
        """Render one file's section now; `crops` are those of `top_faces(scores)`, in that order."""
        n = len(self._entries)
        anchor = f"f{n}"
        if result.warning:
            self._warnings[result.warning] += 1
        if result.error:
            self._entries.append(_Entry((2, 0.0, n), "error", None, result.path, anchor, error=result.error))
            return
        frag = self._dir / f"{n}.html"
        frag.write_text(self._section(result, scores, crops, anchor), encoding="utf-8")
        key = (0, -result.score, n) if result.score is not None else (1, 0.0, n)
        self._entries.append(_Entry(key, result.verdict, result.score, result.path, anchor, frag))

    def _section(self, r: VideoResult, scores: list[FaceScore], crops: list[np.ndarray | None], anchor: str) -> str:
        video = r.meta.get("video") or {}
        facts = [f"score {r.score:.3f}" if r.score is not None else "no score",
                 f"{r.frames_scored} frames scored ({r.frames_with_faces} with faces)",
                 f"{r.faces_scored} faces", f"{r.tracks} track(s)"]
        if r.meta.get("worst_track") is not None:
            facts.append(f"worst track #{r.meta['worst_track']}")
        if video and r.frames_scored > 1:
            facts.append(f"{video.get('width')}×{video.get('height')}, {video.get('fps')} fps"
                         + (f", {video['duration']:.1f} s" if video.get("duration") else ""))
        parts = [f'<section class="record video" id="{anchor}" data-path="{_esc(r.path)}" data-verdict="{_esc(r.verdict)}">',
                 f'<h2><span class="badge {_esc(r.verdict)}">{_esc(r.verdict.upper())}</span>{_esc(r.path)}</h2>',
                 f'<p class="meta">{_esc(" · ".join(facts))}</p>']
        if r.decode_errors:
            parts.append(f'<p class="warn">{r.decode_errors} corrupt packet(s) skipped while decoding</p>')
        if r.warning:
            parts.append(f'<p class="warn">⚠ {_esc(r.warning)}</p>')
        if scores:
            series: dict[int, list[tuple[float, float]]] = defaultdict(list)
            for s in scores:
                series[s.face.track_id].append((s.face.pts, s.prob))
            track_scores = {int(k): v for k, v in r.meta.get("track_scores", {}).items()}
            if r.frames_scored > 1:  # a still image has no time axis
                parts.append(f'<img class="timeline" alt="score over time per track" '
                             f'src="{timeline_plot(series, track_scores, self.cfg, video.get("duration"))}">')
            parts.append('<div class="faces">')
            side = self.cfg.thumb
            for s, crop in zip(self.top_faces(scores), crops):
                cap = f"#{s.face.track_id} · {s.face.pts:.2f} s · frame {s.face.frame_index} · {s.prob:.3f}"
                parts.append("<figure>")
                if crop is not None:
                    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
                    parts.append(f'<img class="crop" width="{side}" height="{side}" alt="face crop" '
                                 f'src="{_data_uri(small, ".jpg")}">')
                if s.xray is not None:
                    xr = cv2.resize(np.asarray(s.xray, np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
                    parts.append(f'<img class="xray" width="{side}" height="{side}" alt="X-ray map" '
                                 f'src="{_data_uri(heatmap(xr))}">')
                parts.append(f"<figcaption>{_esc(cap)}</figcaption></figure>")
            parts.append("</div>")
        else:
            parts.append('<p class="meta">no face was found in the sampled frames</p>')
        parts.append("</section>\n")
        return "\n".join(parts)

    def close(self) -> Path:
        """Write the page (most suspicious first) and remove the temporary sections. Returns its path."""
        entries = sorted(self._entries, key=lambda e: e.key)
        counts = Counter(e.verdict for e in entries)
        tmp = self.path.with_name(f".{self.path.name}.part")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                    f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                    f"<title>{_esc(self.cfg.title)}</title><style>{_CSS}</style></head><body>\n")
            f.write(f"<h1>{_esc(self.cfg.title)}</h1>\n")
            about = " · ".join(f"{k}: {v}" for k, v in self.about.items() if v is not None)
            f.write(f'<p class="sub">{len(entries)} file(s) · '
                    + _esc(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
                    + f" · started {_esc(self._started)}" + (f" · {_esc(about)}" if about else "") + "</p>\n")
            for w, n in self._warnings.items():
                f.write(f'<div class="banner">⚠ WARNING ({n} of {len(entries)} records): {_esc(w)}</div>\n')
            f.write("<table><tr><th>#</th><th>verdict</th><th>score</th><th>file</th></tr>\n")
            for i, e in enumerate(entries, 1):
                score = "" if e.score is None else f"{e.score:.3f}"
                f.write(f'<tr><td class="num">{i}</td><td><span class="badge {_esc(e.verdict)}">{_esc(e.verdict)}'
                        f'</span></td><td class="num">{score}</td><td><a href="#{e.anchor}">{_esc(e.path)}</a></td>'
                        "</tr>\n")
            f.write("</table>\n")
            for e in entries:
                if e.fragment is not None:
                    with e.fragment.open(encoding="utf-8") as frag:
                        shutil.copyfileobj(frag, f)
            errors = [e for e in entries if e.error]
            if errors:
                f.write(f"<h2>Errors ({len(errors)})</h2>\n")
                for e in errors:
                    f.write(f'<section class="record error-record" id="{e.anchor}" data-path="{_esc(e.path)}" '
                            f'data-verdict="error"><h2><span class="badge error">'
                            f'ERROR</span>{_esc(e.path)}</h2><p class="errmsg">{_esc(e.error)}</p></section>\n')
            f.write("</body></html>\n")
        os.replace(tmp, self.path)
        shutil.rmtree(self._dir, ignore_errors=True)
        return self.path

    def __enter__(self) -> HtmlReport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # also when the scan was interrupted: the files scanned so far are reported
