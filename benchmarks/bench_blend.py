"""CPU benchmark of on-the-fly fake making (Face X-ray BI), on one core, against the reference-style search.

The bank: the shared 68-point annotated photos (AFLW2000, 300-W) aligned with THE crop
at 256², replicated into 500 entries of 50 identities (each identity a photo with its
own landmark offset, each entry a small jitter of it). Measured on one thread:

  - BI samples/s: a random target, its partner from `NeighbourIndex.pick` (k-d tree,
    top-20 of other identities), `blend_bi`; and the same with the reference Face X-ray
    partner search (a Python loop over every face summing point distances, the nearest
    face of another identity), the way its online BI generator does it per sample;
  - the partner search alone, µs per pick, at 500 and 5000 faces;
  - SBI samples/s and Face-Cutout (with the overlap rule) per BI sample.

Writes benchmarks/results/blend.json (or --name).

    python benchmarks/bench_blend.py [--runs 3] [--samples 300] [--name blend]
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SHARED, machine, median_time, save  # noqa: E402

from facexray.faces.annotations import aligned, read_annotated_faces  # noqa: E402
from facexray.faces.crop import CropSpec  # noqa: E402
from facexray.train.blend import NeighbourIndex, blend_bi, self_blend  # noqa: E402
from facexray.train.cutout import face_cutout  # noqa: E402

FACES = "data/real_faces"
TARGET_BI_PER_S = 50
NEIGHBOURS = 20


def make_bank(faces, identities: int, per_identity: int, rng: np.random.Generator):
    """(photo index, landmarks, identity) of identities × per_identity entries built from the real faces."""
    photo, lms, ids = [], [], []
    for k in range(identities):
        base = k % len(faces)
        shape = faces[base][2] + rng.normal(0.0, 3.0, (68, 2))
        for _ in range(per_identity):
            photo.append(base)
            lms.append(shape + rng.normal(0.0, 1.0, (68, 2)))
            ids.append(f"id{k}")
    return np.array(photo), np.array(lms, np.float32), ids


def reference_search(i: int, lms: np.ndarray, ids: list[str]) -> int:
    """The reference Face X-ray partner search: for one face, a loop over all faces of other
    identities (other videos), summed point-to-point distance, the nearest wins."""
    best, best_d = -1, np.inf
    for j in range(len(lms)):
        if ids[j] == ids[i]:
            continue
        d = np.sum(np.linalg.norm(lms[i] - lms[j], axis=1))
        if d < best_d:
            best, best_d = j, d
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=300, help="BI samples per timed run")
    ap.add_argument("--name", default="blend")
    args = ap.parse_args()
    if not (SHARED / FACES).is_dir():
        sys.exit(f"annotated faces not found under {SHARED / FACES}")

    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    faces = [(f.image.name, *aligned(f, CropSpec())) for f in read_annotated_faces(SHARED / FACES)
             if len(f.points) == 68]
    photo, lms, ids = make_bank(faces, identities=50, per_identity=10, rng=np.random.default_rng(0))
    index = NeighbourIndex(lms, ids)
    images = [crop for _, crop, _ in faces]
    n = len(lms)
    out: dict = {"machine": machine(), "threads": 1, "runs": args.runs, "crop": CropSpec().size,
                 "bank": {"faces": n, "identities": len(set(ids)), "real_photos": len(faces)},
                 "neighbours_k": NEIGHBOURS}

    def bi_samples(search) -> None:
        rng = np.random.default_rng(1)
        for _ in range(args.samples):
            i = int(rng.integers(n))
            j = search(i, rng)
            blend_bi(images[photo[i]], lms[i], images[photo[j]], lms[j], rng)

    t_ours, _ = median_time(lambda: bi_samples(lambda i, rng: index.pick(i, rng, k=NEIGHBOURS)), args.runs)
    t_ref, _ = median_time(lambda: bi_samples(lambda i, rng: reference_search(i, lms, ids)), args.runs)
    ours = args.samples / t_ours
    out["bi"] = {"samples_per_s": round(ours, 1), "reference_search_samples_per_s": round(args.samples / t_ref, 1),
                 "speedup": round(t_ref / t_ours, 2), "target_samples_per_s_at_least": TARGET_BI_PER_S,
                 "meets_target": ours >= TARGET_BI_PER_S}

    out["search_us_per_pick"] = {}
    jitter = np.random.default_rng(2)
    for copies in (1, 10):
        big_lms = np.concatenate([lms + (jitter.normal(0.0, 0.5, lms.shape) if c else 0) for c in range(copies)])
        big_ids = [f"{x}/{c}" for c in range(copies) for x in ids]
        big = NeighbourIndex(big_lms, big_ids)
        picks = jitter.integers(len(big_lms), size=1000)
        rng = np.random.default_rng(3)
        t_tree, _ = median_time(lambda: [big.pick(int(i), rng, k=NEIGHBOURS) for i in picks], args.runs)
        loop_picks = picks[:max(20, 200 // copies)]
        t_loop, _ = median_time(lambda: [reference_search(int(i), big_lms, big_ids) for i in loop_picks], args.runs)
        out["search_us_per_pick"][str(len(big_lms))] = {"kdtree": round(t_tree / len(picks) * 1e6, 1),
                                                       "reference_loop": round(t_loop / len(loop_picks) * 1e6, 1)}

    def sbi_samples() -> None:
        rng = np.random.default_rng(4)
        for _ in range(args.samples):
            i = int(rng.integers(n))
            self_blend(images[photo[i]], lms[i], rng)

    t_sbi, _ = median_time(sbi_samples, args.runs)
    out["sbi_samples_per_s"] = round(args.samples / t_sbi, 1)

    rng = np.random.default_rng(5)
    blends = []
    for _ in range(50):
        i = int(rng.integers(n))
        j = index.pick(i, rng, k=NEIGHBOURS)
        blends.append((blend_bi(images[photo[i]], lms[i], images[photo[j]], lms[j], rng), lms[i]))

    def cutouts() -> None:
        rng = np.random.default_rng(6)
        for res, lm in blends:
            face_cutout(res.image, lm, rng, blend_mask=res.mask)

    t_cut, _ = median_time(cutouts, args.runs)
    out["cutout_on_bi_samples_per_s"] = round(len(blends) / t_cut, 1)
    save(args.name, out)


if __name__ == "__main__":
    main()
