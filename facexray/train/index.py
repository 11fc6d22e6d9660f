"""Reading a prepared dataset's index (`index.jsonl`, written by `facexray prepare`)."""

from __future__ import annotations

import json
from pathlib import Path


def read_index(dataset: str | Path, split: str | None = None) -> list[dict]:
    """The face records of a prepared dataset's index.jsonl, optionally of one split only."""
    path = Path(dataset) / "index.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `facexray prepare SRC... --out {dataset}` first")
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in recs if split is None or r["split"] == split]
