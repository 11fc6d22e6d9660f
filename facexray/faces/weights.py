"""Finding detector weights on disk (and, only when allowed, fetching them once).

Lookup order for `resolve_weights(name, path)`:

1. `path`, when given (an error if it is not there: an explicit choice never falls back);
2. `$FACEXRAY_MODELS/<folder>/<file>`, then `$FACEXRAY_MODELS/<file>`;
3. the user cache, `cache_dir()/models/<folder>/<file>`;
4. with `FACEXRAY_ALLOW_DOWNLOAD=1` and a known URL: download into the user cache,
   verify its sha256, then rename into place (never a half-written file).

Anything else raises `ModelNotFoundError` naming every place it looked and how to fix it.

Example:
    >>> REGISTRY["retinaface_mnet025"].filename
    'Retinaface__weights__mobilenet0.25_Final.pth'
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotFoundError
from ..paths import cache_dir, file_sha256, models_dir


@dataclass(frozen=True)
class WeightsSpec:
    """A known weights file: where it sits inside a models folder, its checksum and origin."""

    folder: str
    filename: str
    sha256: str
    url: str | None = None


# URLs are raw GitHub files pinned to the commit the checksums were taken from
# (models/MANIFEST.tsv in the shared test data); the sha256 check rejects anything else.
REGISTRY: dict[str, WeightsSpec] = {
    "retinaface_mnet025": WeightsSpec(
        folder="retinaface_mnet025",
        filename="Retinaface__weights__mobilenet0.25_Final.pth",
        sha256="5f88f7957d9eaef82b49b9e0202bc56e97292e2aede2999209accd34442cc4df",
        url="https://raw.githubusercontent.com/cunjian/pytorch_face_landmark/"
            "6f34bf9f034aa2f521952f825e6ccc567deb42d6/Retinaface/weights/mobilenet0.25_Final.pth"),
    "retinaface_1mb_mnet025": WeightsSpec(
        folder="retinaface_1mb_landmark",
        filename="weights__mobilenet0.25_Final.pth",
        sha256="ed6fa7d45a5179f03cb5ce82c73b0c6711372968e53782e88395acee88d319e1",
        url="https://raw.githubusercontent.com/biubug6/Face-Detector-1MB-with-landmark/"
            "2b075657aef954b9426f938ac7fce100b6910fe6/weights/mobilenet0.25_Final.pth"),
    "pfld68": WeightsSpec(
        folder="landmark68_cunjian",
        filename="onnx__pfld.onnx",
        sha256="7d7bbd5c6a1d9272e58d9773898284a1905d872eba9a662df9b5f20f1ba6f83e",
        url="https://raw.githubusercontent.com/cunjian/pytorch_face_landmark/"
            "6f34bf9f034aa2f521952f825e6ccc567deb42d6/onnx/pfld.onnx"),
}



def resolve_weights(name: str, path: str | Path | None = None) -> Path:
    """The weights file for detector `name` (see the module docstring for the lookup order)."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelNotFoundError(f"detector weights {p} do not exist (given explicitly for {name!r})")
        return p
    if name not in REGISTRY:
        raise ModelNotFoundError(f"no weights are known for detector {name!r} (known: {', '.join(REGISTRY)}); "
                                 "pass the file with --detector-weights")
    spec = REGISTRY[name]
    candidates = []
    mdir = models_dir()
    if mdir is not None:
        candidates += [mdir / spec.folder / spec.filename, mdir / spec.filename]
    cached = cache_dir() / "models" / spec.folder / spec.filename
    candidates.append(cached)
    for c in candidates:
        if c.is_file():
            return c
    allow = os.environ.get("FACEXRAY_ALLOW_DOWNLOAD") == "1"
    if allow and spec.url:
        return _download(spec.url, cached, spec.sha256)
    looked = "\n  ".join(str(c) for c in candidates)
    if not allow:
        how = "or set FACEXRAY_ALLOW_DOWNLOAD=1 to download it once into the user cache"
    else:
        how = "(no download URL is known for it, so download it by hand)"
    relative = ""
    if mdir is not None and not mdir.is_absolute():
        relative = (f"\nFACEXRAY_MODELS={mdir} is a relative path, read from the current folder ({Path.cwd()}): "
                    f"export it as an absolute path, e.g. export FACEXRAY_MODELS=$(realpath {mdir}) where it exists")
    raise ModelNotFoundError(
        f"weights for detector {name!r} ({spec.filename}, sha256 {spec.sha256[:12]}…) not found; looked in:\n  "
        f"{looked}{relative}\nFix: set FACEXRAY_MODELS to a folder holding {spec.folder}/{spec.filename}, "
        f"or pass the file with --detector-weights, {how}")


def _download(url: str, dest: Path, sha256: str) -> Path:
    """Fetch `url` to `dest` atomically, or raise ModelNotFoundError leaving nothing behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out)
        got = file_sha256(tmp)
        if got != sha256:
            raise ModelNotFoundError(f"downloaded {url} but its sha256 is {got}, expected {sha256}; "
                                     "the file was discarded")
        os.replace(tmp, dest)
        return dest
    except OSError as e:
        raise ModelNotFoundError(f"could not download {url} to {dest}: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
