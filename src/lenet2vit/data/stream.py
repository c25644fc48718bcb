"""The streaming data path: image files decoded by worker processes, one batch at a time.

For image folders whose decoded pixels would not fit in memory (ImageNet's 1.28M training
images at 224 px are about 190 GB as uint8), a split is kept as a list of files,
:class:`ImageFiles`, and :class:`StreamLoader` reads it with a torch ``DataLoader``: worker
processes read and decode each file (torchvision.io, through :func:`decode_image_bytes`),
make its view, and the batches travel through pinned memory to the device. Memory stays
bounded by the workers' prefetch, whatever the size of the folder. With ``decode_device``
(``--gpu-decode``) the workers only read the files, and the JPEGs of each batch are decoded
together on the GPU by nvJPEG; the crops are then made there, with the same draws.

- Training views follow the ImageNet recipe: ``RandomResizedCrop`` (scale 0.08-1, aspect
  3/4-4/3) to the stored size, and a horizontal flip when the protocol flips.
- Evaluation views are the memory path's own: :func:`fit_square` (shorter side resized,
  centre crop) to the stored size, then :func:`to_input` resizes to the input size and
  normalises. So both paths feed the network the same test pixels.
- Every random draw comes from a generator seeded by (seed, epoch, image index): the
  views do not depend on the number of workers, processes or machines, and a resumed epoch
  draws what it drew before.
- Distributed: every rank draws the same permutation and takes its contiguous share of each
  global batch, exactly like :class:`~lenet2vit.data.loader.DeviceLoader`, so N ranks decode
  each image once per epoch in total.

:func:`choose_mode` picks this path when a folder's decoded size would pass the memory budget.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from lenet2vit.data.arrays import DataError, ImageArrays, balanced_subset, stratified_holdout
from lenet2vit.data.augment import PaperAugment, paper_augment_batch
from lenet2vit.data.decode import DEFAULT_IMAGE_SIZE, decode_image_bytes
from lenet2vit.data.loader import BatchLoader, epoch_seed
from lenet2vit.data.preprocess import fit_square, to_input

__all__ = ["ImageFiles", "StreamLoader", "DATA_MODES", "memory_budget", "choose_mode", "decoded_bytes"]

DATA_MODES = ("auto", "memory", "stream")
RRC_SCALE = (0.08, 1.0)  # RandomResizedCrop's area range (Szegedy et al. 2015; torchvision's default)
RRC_RATIO = (3 / 4, 4 / 3)
SAMPLE_FOR_STATS = 2048  # images decoded to estimate the channel statistics of a streamed split
_PROBE = 16  # files whose header sizes decide a streamed folder's stored size


@dataclass
class ImageFiles:
    """One split as image files on disk: the streaming counterpart of :class:`ImageArrays`.

    ``files`` are paths relative to ``root``; each is decoded when a batch needs it and fitted
    to ``image_size`` squares (the size the memory path would have stored). Has the attributes
    the engine reads from ImageArrays (``labels``, ``classes``, ``image_size``, ``channels``,
    ``origin``, ``skipped``), without the pixels.
    """

    root: Path
    files: list[str]
    labels: torch.Tensor
    classes: list[str]
    image_size: int
    origin: str = ""
    skipped: list[str] = field(default_factory=list)

    channels = 3  # every file is decoded to RGB

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files under {self.root}, {len(self.classes)} classes, {self.image_size}px)"

    def subset(self, index: torch.Tensor) -> "ImageFiles":
        index = torch.as_tensor(index, dtype=torch.int64)
        return ImageFiles(self.root, [self.files[i] for i in index.tolist()], self.labels[index].clone(),
                          list(self.classes), self.image_size, self.origin, list(self.skipped))

    def read(self, i: int) -> bytes:
        return (self.root / self.files[i]).read_bytes()

    def sample(self, n: int = SAMPLE_FOR_STATS, seed: int = 0) -> ImageArrays:
        """A seeded, class-balanced sample of at most ``n`` images, decoded as the eval views (for
        statistics such as the channel mean and std, which a streamed split cannot sum over)."""
        parts = list(self.sample_batches(n, seed))
        if not parts:
            raise DataError(f"no images to sample under {self.root}")
        return ImageArrays(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                           list(self.classes), origin=parts[0].origin)

    def sample_batches(self, n: int = SAMPLE_FOR_STATS, seed: int = 0, batch: int = 64) -> Iterator[ImageArrays]:
        """:meth:`sample`, ``batch`` images at a time: statistics over it never hold the sample."""
        idx = balanced_subset(self.labels, n, seed)
        views = _Views(self, train=False, flip=False, seed=seed)
        origin = f"a sample of {len(idx)} of {self.origin}"
        for part in idx.split(batch):
            images = [views[(int(i), 0)][0] for i in part.tolist()]
            yield ImageArrays(torch.stack(images), self.labels[part].clone(), list(self.classes), origin=origin)


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    digest = hashlib.blake2b(f"{int(seed)}/{int(epoch)}/{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class _Views(Dataset):
    """``dataset[(index, epoch)]`` -> (uint8 (3, S, S) view, label): decoded and cropped in a worker."""

    def __init__(self, files: ImageFiles, *, train: bool, flip: bool, seed: int) -> None:
        self.files, self.train, self.flip, self.seed = files, train, flip, int(seed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, epoch = key
        image, index = self._decode(index)
        return self.view(image, index, epoch), int(self.files.labels[index])

    def view(self, image: torch.Tensor, index: int, epoch: int) -> torch.Tensor:
        """The uint8 (3, S, S) view of a decoded image (on any device) for this pass."""
        size = self.files.image_size
        if not self.train:
            return fit_square(image, size)
        from torchvision.transforms import RandomResizedCrop
        from torchvision.transforms.v2 import functional as TF

        # The draws come from a generator of their own, so no worker's or caller's global RNG moves.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_sample_seed(self.seed, epoch, index))
            top, left, h, w = RandomResizedCrop.get_params(image, RRC_SCALE, RRC_RATIO)
            mirror = self.flip and bool(torch.rand(()) < 0.5)
        view = TF.resized_crop(image, top, left, h, w, [size, size], antialias=True)
        return view.flip(-1) if mirror else view

    def _decode(self, index: int) -> tuple[torch.Tensor, int]:
        """The image at ``index``, or, if that file cannot be read, the next readable one (said once)."""
        n = len(self.files)
        for step in range(min(n, 64)):
            i = (index + step) % n
            try:
                return decode_image_bytes(self.files.read(i)), i
            except (OSError, ValueError) as e:
                print(f"warning: cannot read {self.files.files[i]} ({e}); its neighbour in the list stands in "
                      "for it this epoch", file=sys.stderr)
        raise DataError(f"none of 64 files from {self.files.files[index]} on can be read under {self.files.root}; "
                        "check the folder")


class _Encoded(Dataset):
    """``dataset[(index, epoch)]`` -> (index, epoch, bytes or image): a worker reads the file and
    passes a baseline RGB or grey JPEG on as its bytes, for nvJPEG to decode on the GPU. Anything
    else (PNG, CMYK, an EXIF rotation, which nvJPEG does not apply) it decodes itself, as
    :class:`_Views` does, so both decoders give the same images."""

    def __init__(self, views: _Views) -> None:
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int, bool, torch.Tensor]:
        index, epoch = key
        try:
            data = self.views.files.read(index)
            if _gpu_decodable(data):
                return index, epoch, True, torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return index, epoch, False, decode_image_bytes(data)  # the bytes at hand, not read twice
        except (OSError, ValueError):
            image, index = self.views._decode(index)  # the neighbour rule, said once
            return index, epoch, False, image


def _gpu_decodable(data: bytes) -> bool:
    """Whether nvJPEG gives this file's pixels as the CPU decoder does: an RGB or grey JPEG
    without an EXIF rotation (read from the header only)."""
    if data[:2] != b"\xff\xd8":
        return False
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.mode in ("RGB", "L") and im.getexif().get(0x0112, 1) == 1
    except Exception:  # PIL raises many types for bad data; the CPU path reports the file
        return False


def decode_on_device(items: list[tuple[int, int, bool, torch.Tensor]], views: _Views,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of :class:`_Encoded` items as uint8 views and labels on ``device``: the JPEG
    bytes decoded together (nvJPEG on a CUDA device), a file it cannot decode on the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from lenet2vit.data.decode import quiet_torchvision

    encoded = [k for k, (_, _, is_bytes, _) in enumerate(items) if is_bytes]
    images: dict[int, torch.Tensor] = {}
    if encoded:
        with quiet_torchvision():
            try:
                out = decode_jpeg([items[k][3] for k in encoded], mode=ImageReadMode.RGB, device=device)
                images.update(zip(encoded, out))
            except RuntimeError:  # one bad file fails the whole batch: decode them one by one
                for k in encoded:
                    try:
                        images[k] = decode_jpeg(items[k][3], mode=ImageReadMode.RGB, device=device)
                    except RuntimeError:
                        pass
    out_views, labels = [], []
    for k, (index, epoch, is_bytes, data) in enumerate(items):
        image = images.get(k)
        if image is None:  # decoded by the worker, or bytes nvJPEG could not read: the CPU decoder
            image, index = views._decode(index) if is_bytes else (data, index)
        out_views.append(views.view(image.to(device, non_blocking=True), index, epoch))
        labels.append(int(views.files.labels[index]))
    return torch.stack(out_views), torch.tensor(labels, device=device)


class _ShardedBatches:
    """The index lists of one pass for one rank: the global batches of a seeded permutation, each
    cut into ``world_size`` contiguous shares (DeviceLoader's order, so both paths agree)."""

    def __init__(self, loader: "StreamLoader", epoch: int) -> None:
        self.loader, self.epoch = loader, epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        ld = self.loader
        if ld.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(ld.seed, self.epoch))
            order = torch.randperm(ld.num_samples, generator=g).tolist()
        else:
            order = range(ld.num_samples)
        b = ld.batch_size
        for i in range(len(ld)):
            batch = order[i * b : (i + 1) * b]
            share = math.ceil(len(batch) / ld.world_size)
            mine = batch[ld.rank * share : (ld.rank + 1) * share]
            yield [(int(j), self.epoch) for j in mine]


class StreamLoader(BatchLoader):
    """Iterates (x, y) batches of an :class:`ImageFiles` split, decoded by ``workers`` processes.

    Takes DeviceLoader's arguments and keeps its contract: ``set_epoch``, ``len`` (batches),
    normalised float batches of ``dtype`` on ``device``, resized to ``image_size`` when given,
    channels_last when asked; shuffled passes drop the last partial batch under DDP.
    """

    def __init__(
        self,
        files: ImageFiles,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        device: str | torch.device = "cpu",
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        flip: bool = False,
        drop_last: bool = False,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        image_size: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        paper_augment: PaperAugment | None = None,
        workers: int | None = None,
        decode_device: str | torch.device | None = None,
    ) -> None:
        if int(batch_size) < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}; pass e.g. 256")
        if not 0 <= int(rank) < int(world_size):
            raise DataError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if world_size > 1 and shuffle and int(batch_size) % world_size:
            raise DataError(f"batch size {batch_size} is not divisible by {world_size} processes; pass a multiple")
        self.files = files
        self.classes = list(files.classes)
        self.num_samples = len(files)
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.device = torch.device(device)
        self.drop_last = drop_last or (world_size > 1 and shuffle)
        self.channels_last, self.dtype = channels_last, dtype
        self.image_size = None if image_size in (None, files.image_size) else int(image_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.paper_augment = paper_augment if paper_augment is not None and paper_augment.enabled else None
        self.workers = default_workers(world_size) if workers is None else int(workers)
        self._normalise_with(mean, std, files.channels, self.device)
        self._views = _Views(files, train=shuffle, flip=flip and shuffle, seed=self.seed)
        # nvJPEG: the workers only read the files, the JPEGs of a batch are decoded together on the GPU
        self.decode_device = None if decode_device is None else torch.device(decode_device)
        self.epoch = 0

    def _views_of(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The uint8 views and labels of one pass, on the device."""
        batches = _ShardedBatches(self, epoch)
        if self.decode_device is not None:
            loader = DataLoader(_Encoded(self._views), batch_sampler=batches, num_workers=self.workers,
                                collate_fn=list, persistent_workers=False)
            for items in loader:
                x, y = decode_on_device(items, self._views, self.decode_device)
                yield x.to(self.device), y.to(self.device)
            return
        pin = self.device.type == "cuda"
        loader = DataLoader(self._views, batch_sampler=batches, num_workers=self.workers, pin_memory=pin,
                            persistent_workers=False)
        for x, y in loader:
            yield x.to(self.device, non_blocking=pin), y.to(self.device, non_blocking=pin)

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, epoch) ^ 0x5EED)
        for x, y in self._views_of(epoch):
            x = to_input(x, self._scale, self._shift, self.image_size)  # the one preprocessing
            if self.paper_augment is not None and self.shuffle:
                x = paper_augment_batch(x, self.paper_augment, self._std, g)
            if self.dtype != torch.float32:
                x = x.to(self.dtype)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def __repr__(self) -> str:
        return (f"StreamLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}, workers={self.workers}, device={self.device}"
                + (f", decode_device={self.decode_device}" if self.decode_device is not None else "") + ")")


def default_workers(world_size: int = 1) -> int:
    """Decoding processes per rank: the CPUs this process may use, shared among the local ranks
    (at most 8 each; 0, decoding in the training process, on a single CPU)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    per_rank = cpus // max(local, 1)
    return 0 if per_rank <= 1 else min(per_rank, 8)


# ------------------------------------------------------------------------------ choosing a path


def memory_budget() -> int:
    """Bytes the decoded data may take in memory: ``$LENET2VIT_MEMORY_BUDGET`` (e.g. ``8G``),
    else half of the machine's physical memory."""
    raw = os.environ.get("LENET2VIT_MEMORY_BUDGET")
    if raw:
        units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        text = raw.strip().upper().removesuffix("B")
        try:
            return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(float(text))
        except ValueError:
            raise DataError(f"LENET2VIT_MEMORY_BUDGET={raw!r} is not a size; write e.g. 8G or 500M") from None
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def decoded_bytes(n_images: int, image_size: int, channels: int = 3) -> int:
    """The memory path's footprint for ``n_images`` stored as uint8 squares of ``image_size``."""
    return int(n_images) * channels * int(image_size) ** 2


def choose_mode(mode: str, n_images: int, image_size: int) -> tuple[str, str]:
    """``("memory" | "stream", why)``: the data path for a folder of ``n_images`` at ``image_size``."""
    if mode not in DATA_MODES:
        raise DataError(f"data mode {mode!r} is not valid; choose one of: {', '.join(DATA_MODES)}")
    need = decoded_bytes(n_images, image_size)
    size = f"{n_images} images at {image_size}px decode to {need / 2**30:.1f} GiB"
    if mode != "auto":
        return mode, f"{mode} (--data-mode {mode}; {size})"
    budget = memory_budget()
    if need > budget:
        return "stream", f"stream: {size}, over the memory budget of {budget / 2**30:.1f} GiB ($LENET2VIT_MEMORY_BUDGET)"
    return "memory", f"memory: {size}, within the memory budget of {budget / 2**30:.1f} GiB"


def probe_size(root: Path, files: Sequence[str]) -> int:
    """The stored size of a streamed folder, as the memory path would choose it: the images' own
    side when the first files are all squares of one size, else 224 (read from headers only)."""
    from PIL import Image

    sizes = set()
    for f in files[:_PROBE]:
        try:
            with Image.open(root / f) as im:
                sizes.add(im.size)
        except OSError:
            continue
    if len(sizes) == 1:
        (w, h), = sizes
        if w == h:
            return w
    return DEFAULT_IMAGE_SIZE


def split_files(index: "ImageFiles", val_fraction: float, seed: int) -> tuple["ImageFiles", "ImageFiles"]:
    """Hold a stratified ``val_fraction`` of a streamed split out, as train_val_split does for arrays."""
    keep, hold = stratified_holdout(index.labels, val_fraction, seed)
    val = index.subset(hold)
    val.origin = f"{val_fraction:.0%} held out of {index.origin or 'train'}"
    return index.subset(keep), val
