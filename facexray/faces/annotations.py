"""Human landmark annotations of face photos, read from their public formats.

For measuring detectors and landmark models against people's clicks, and for
aligned real faces with known 68 points. Reads AFLW2000-3D `.mat` files (68 points,
head pose) and COCO-style keypoint json files (300W, 300W-LP, AFLW, COFW, LaPa, WFLW
samples as mmpose ships them), laid out as in `../shared/data/real_faces`.

Example:
    >>> faces = read_annotated_faces("../shared/data/real_faces")      # doctest: +SKIP
    >>> faces[0].dataset, faces[0].points.shape
    ('AFLW2000', (68, 2))
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .crop import CropSpec, crop_face

_COCO_NAMES = {"300w": "300W", "300wlp": "300W-LP", "aflw": "AFLW", "cofw": "COFW", "lapa": "LaPa", "wflw": "WFLW"}


@dataclass(frozen=True)
class AnnotatedFace:
    """One annotated face: its photo, its points (K, 2) in pixels, and its yaw in degrees when known."""

    dataset: str
    image: Path
    points: np.ndarray
    yaw: float | None = None

    def load_rgb(self) -> np.ndarray:
        """The photo, RGB uint8."""
        return np.ascontiguousarray(cv2.imread(str(self.image), cv2.IMREAD_COLOR)[:, :, ::-1])


def read_annotated_faces(root: str | Path) -> list[AnnotatedFace]:
    """Every annotated face under `root`: AFLW2000-3D under `prnet/`, COCO-style json under `mmpose_facelm/`.

    An AFLW2000 `.mat` whose photo is stored under another name is matched through the
    folder's MANIFEST.tsv (its source-path column).
    """
    from scipy.io import loadmat

    root = Path(root)
    origin: dict[str, str] = {}
    if (root / "MANIFEST.tsv").exists():
        with open(root / "MANIFEST.tsv", newline="") as f:
            origin = {row[0]: row[4] for row in csv.reader(f, delimiter="\t") if len(row) > 4}
    faces = []
    for mat in sorted((root / "prnet").glob("*AFLW2000*.mat")):
        image = mat.with_suffix(".jpg")
        if not image.exists():
            name = mat.stem.split("__")[-1]
            match = [f for f, src in origin.items() if f.startswith("prnet/") and f"AFLW2000/{name}.jpg" in src]
            if not match:
                continue
            image = root / match[0]
        m = loadmat(str(mat))
        faces.append(AnnotatedFace("AFLW2000", image, m["pt3d_68"][:2].T.astype(np.float64),
                                   float(np.degrees(m["Pose_Para"][0, 1]))))
    for js in sorted((root / "mmpose_facelm").glob("tests__data__*__test_*.json")):
        key = js.name.split("__")[2]
        data = json.loads(js.read_text())
        files = {im["id"]: im["file_name"] for im in data["images"]}
        for a in data["annotations"]:
            pts = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)[:, :2]
            faces.append(AnnotatedFace(_COCO_NAMES.get(key, key),
                                       js.parent / f"tests__data__{key}__{files[a['image_id']]}", pts))
    return faces


def aligned(face: AnnotatedFace, spec: CropSpec = CropSpec()) -> tuple[np.ndarray, np.ndarray]:
    """A 68-point face cut by THE crop function from its annotated 5 points: (crop, 68 points in crop pixels)."""
    from .landmarks import five_from_68

    crop, m = crop_face(face.load_rgb(), five_from_68(face.points), spec)
    return crop, (face.points @ m[:, :2].T + m[:, 2]).astype(np.float32)
