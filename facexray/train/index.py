"""Reading a prepared dataset's index (`index.jsonl`, written by `facexray prepare`)."""

from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file ([] when absent); a torn last line (a run killed mid-write) is ignored."""
    if not path.exists():
        return []
    recs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return recs


def read_index(dataset: str | Path, split: str | None = None) -> list[dict]:
    """The face records of a prepared dataset's index.jsonl, optionally of one split only."""
    path = Path(dataset) / "index.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `facexray prepare SRC... --out {dataset}` first")
    return [r for r in read_jsonl(path) if split is None or r["split"] == split]
