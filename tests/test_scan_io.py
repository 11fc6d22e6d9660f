"""File discovery and the append-only results file."""

import json
import os

import pytest

from facexray.scan import ResultWriter, discover


def test_discover_recurses_filters_and_keeps_explicit_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ["a/x.mp4", "a/b/y.MOV", "a/notes.txt", ".hidden/z.mp4", "a/b/.w.mp4"]:
        (tmp_path / name).write_bytes(b"")
    explicit = tmp_path / "a" / "notes.txt"
    found = discover([tmp_path, explicit])
    assert found == [tmp_path / "a/b/y.MOV", tmp_path / "a/x.mp4", explicit]
    with pytest.raises(FileNotFoundError, match="no such file"):
        discover([tmp_path / "missing"])


def test_result_writer_appends_whole_lines(tmp_path):
    out = tmp_path / "sub" / "r.jsonl"
    with ResultWriter(out) as w:
        w.write({"path": "a", "score": 0.5})
    with ResultWriter(out) as w:
        w.write({"path": "b", "text": "ünïcode\nnewline"})
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["path"] for x in lines] == ["a", "b"]
    assert json.loads(lines[1])["text"] == "ünïcode\nnewline"
    assert os.stat(out).st_size == len(out.read_bytes())
