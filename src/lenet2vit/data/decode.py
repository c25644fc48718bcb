"""Decoding encoded image files into one uint8 (N, 3, S, S) tensor."""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from lenet2vit.data.arrays import DataError
from lenet2vit.data.preprocess import fit_square

try:  # fast native decoders; deprecated in torchvision 0.29, so PIL is the fallback
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as _tv_decode_image
except ImportError:  # pragma: no cover - depends on the installed torchvision
    _tv_decode_image = None

DEFAULT_IMAGE_SIZE = 224  # used when the images of a folder do not all share one square size
_CHUNK = 512


@dataclass(frozen=True)
class Entry:
    """One image file of a source: its name for messages, its label and how to read its bytes."""

    name: str
    label: int
    read: Callable[[], bytes]


@contextmanager
def quiet_torchvision() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*image decoding.*TorchVision.*deprecated", DeprecationWarning)
        yield


def _from_16bit(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x, dtype=np.int32) if isinstance(x, np.ndarray) else x.to(torch.int32))
    return ((x * 255 + 32767) // 65535).to(torch.uint8)


def _pil_decode(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im)  # phone photos: apply the stored rotation
        if im.mode.startswith("I;16") or im.mode == "I":
            # PIL's convert("RGB") clips 16-bit values at 255 instead of scaling them
            gray = _from_16bit(np.clip(np.asarray(im, dtype=np.int64), 0, 65535))
            return gray.unsqueeze(0).expand(3, -1, -1).contiguous()
        rgb = np.array(im.convert("RGB"))
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def decode_image_bytes(data: bytes) -> torch.Tensor:
    """Decode one encoded image into a uint8 (3, H, W) RGB tensor.

    Grayscale, RGBA (alpha dropped), palette, CMYK and 16-bit images all come out as 8-bit
    RGB; an animated image gives its first frame; an EXIF orientation (phone photos) is
    applied. Tries torchvision's native decoder first and falls back to PIL; raises ValueError
    when neither can read the data. Every path (data sets, predict, explain, serve) decodes
    with this function.
    """
    if not data:
        raise ValueError("empty file")
    if _tv_decode_image is not None:
        try:
            with quiet_torchvision():
                x = _tv_decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB,
                                     apply_exif_orientation=True)
        except Exception:
            x = None
        if x is not None:
            if x.ndim == 4:
                x = x[0]
            if x.dtype == torch.uint16:
                x = _from_16bit(x)
            if x.dtype == torch.uint8 and x.shape[0] == 3:
                return x
    try:
        return _pil_decode(data)
    except Exception as e:  # PIL raises many types for bad data
        raise ValueError(f"not a readable image ({type(e).__name__}: {e})") from None


class _SizeMismatch(Exception):
    pass


def decode_entries(
    entries: Sequence[Entry],
    image_size: int | None,
    *,
    strict: bool,
    progress: bool,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode `entries` into (images uint8 (N, 3, S, S), labels int64 (N,), skipped names).

    With image_size=None the images keep their size if all of them share one square size, and
    are otherwise fitted to DEFAULT_IMAGE_SIZE (shorter side resized, center-cropped). Files
    that cannot be read or decoded are left out and named in the skipped list, or raise
    DataError when strict. Decoding runs in a few threads, chunk by chunk.
    """
    with quiet_torchvision():
        try:
            return _decode_all(entries, image_size, strict, progress, desc)
        except _SizeMismatch:
            return _decode_all(entries, DEFAULT_IMAGE_SIZE, strict, progress, desc)


def _decode_all(
    entries: Sequence[Entry], image_size: int | None, strict: bool, progress: bool, desc: str
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from tqdm.auto import tqdm

    n = len(entries)
    failed: dict[int, str] = {}

    def decode_one(i: int) -> torch.Tensor | None:
        try:
            return decode_image_bytes(entries[i].read())
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            if strict:
                raise DataError(
                    f"cannot read image {entries[i].name}: {reason}; fix or remove the file, "
                    "or leave strict off to skip unreadable files"
                ) from None
            failed[i] = reason
            return None

    # In auto mode the first readable image proposes the size; a later one of another size
    # makes the caller start over with the default size.
    first, start = None, 0
    while first is None and start < n:
        first = decode_one(start)
        start += 1
    if first is None:  # nothing readable: the caller reports it
        empty = torch.zeros((0, 3, image_size or 1, image_size or 1), dtype=torch.uint8)
        return empty, torch.zeros(0, dtype=torch.int64), [entries[i].name for i in sorted(failed)]
    h, w = first.shape[1:]
    auto = image_size is None and h == w
    size = image_size or (h if h == w else DEFAULT_IMAGE_SIZE)
    out = torch.empty((n, 3, size, size), dtype=torch.uint8)
    out[start - 1] = fit_square(first, size)
    stop = threading.Event()

    def work(lo: int, hi: int) -> int:
        for i in range(lo, hi):
            if stop.is_set():
                break
            x = decode_one(i)
            if x is None:
                continue
            if auto and tuple(x.shape[1:]) != (size, size):
                stop.set()
                raise _SizeMismatch
            out[i] = fit_square(x, size)
        return hi - lo

    chunks = [(lo, min(lo + _CHUNK, n)) for lo in range(start, n, _CHUNK)]
    workers = min(4, os.cpu_count() or 1, max(1, len(chunks)))
    with tqdm(total=n, initial=start, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        if workers == 1:
            for lo, hi in chunks:
                bar.update(work(lo, hi))
        else:
            with ThreadPoolExecutor(workers) as pool:
                futures = [pool.submit(work, lo, hi) for lo, hi in chunks]
                try:
                    for fut in as_completed(futures):
                        bar.update(fut.result())
                except BaseException:
                    stop.set()
                    raise

    labels = torch.tensor([e.label for e in entries], dtype=torch.int64)
    skipped = [entries[i].name for i in sorted(failed)]
    if failed:
        keep = torch.ones(n, dtype=torch.bool)
        keep[sorted(failed)] = False
        out, labels = out[keep], labels[keep]
    return out, labels, skipped
