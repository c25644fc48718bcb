"""On-disk cache of decoded arrays: one safetensors file per (source, split, image size)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any

from safetensors.torch import load as st_load
from safetensors.torch import save_file as st_save_file

from lenet2vit.data.arrays import ImageArrays

FORMAT_VERSION = 3  # bump when decoding changes, so old cache files are not used (3: EXIF rotation, torchvision sizes, origin)


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    """The cache folder: `cache_dir`, else $LENET2VIT_CACHE, else ~/.cache/lenet2vit."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("LENET2VIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lenet2vit"


def cache_file(cache_dir: Path, dataset: str, split: str, key: dict[str, Any]) -> Path:
    """The cache path for one split of a source; `key` must describe everything that shapes the arrays."""
    blob = json.dumps({**key, "dataset": dataset, "split": split, "format": FORMAT_VERSION}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:20]
    return cache_dir / f"{dataset}-{split}-{digest}.safetensors"


def _crc(arrays: ImageArrays) -> str:
    crc = zlib.crc32(arrays.images.numpy())
    return f"{zlib.crc32(arrays.labels.numpy(), crc):08x}"


def load_cached(path: Path) -> ImageArrays | None:
    """Read arrays saved by save_cached; None when the file is missing, stale or corrupt."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + n])["__metadata__"]
        tensors = st_load(data)
        arrays = ImageArrays(
            tensors["images"], tensors["labels"], json.loads(meta["classes"]), json.loads(meta["skipped"]),
            meta.get("origin", ""),
        )
        if meta["format"] != str(FORMAT_VERSION) or meta["crc32"] != _crc(arrays):
            raise ValueError("format version or checksum differs")
    except Exception as e:  # any damage means: decode again
        why = " ".join(f"{type(e).__name__}: {e}".split())
        warnings.warn(f"ignoring the unreadable data cache file {path} ({why}); rebuilding it", stacklevel=4)
        return None
    return arrays


def save_cached(path: Path, arrays: ImageArrays) -> None:
    """Write arrays atomically (temporary file in the same folder, fsync, rename).

    A cache that cannot be written only costs time, so failures warn instead of raising.
    """
    meta = {
        "format": str(FORMAT_VERSION),
        "classes": json.dumps(arrays.classes),
        "skipped": json.dumps(arrays.skipped),
        "origin": arrays.origin,
        "crc32": _crc(arrays),
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        os.close(fd)
        st_save_file({"images": arrays.images.contiguous(), "labels": arrays.labels.contiguous()}, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache holds nothing secret
        os.replace(tmp, path)
        tmp = None
    except Exception as e:  # OSError, or safetensors' own error type
        warnings.warn(f"could not write the data cache {path} ({e}); continuing without it", stacklevel=4)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)

