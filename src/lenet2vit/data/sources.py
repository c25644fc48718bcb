"""Data sources (CIFAR-10 in its official and image-folder forms, any image folder, the
scikit-learn digits), decoded once into ImageArrays and cached on disk."""

from __future__ import annotations

import functools
import importlib
import io
import pickle
import posixpath
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lenet2vit.data.archive import ARCHIVE_HINT, ArchiveTree, DirTree, Tree, is_archive
from lenet2vit.data.arrays import (
    DataError,
    ImageArrays,
    balanced_subset,
    stratified_holdout,
    train_val_split,
)
from lenet2vit.data.cache import cache_file, load_cached, resolve_cache_dir, save_cached
from lenet2vit.data.decode import Entry, decode_entries
from lenet2vit.data.preprocess import fit_square, is_image_name
from lenet2vit.data.stream import ImageFiles, probe_size, split_files

DATASETS = ("cifar10", "folder", "digits")
SPLITS = ("train", "test")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# A source without its own test split (digits, a folder with train/ only) holds this share of
# every class out as the test split, always with the same seed.
HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0
DIGITS_IMAGE_SIZE = 32
_BATCH_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_BATCH_NAMES = frozenset(_BATCH_FILES["train"] + _BATCH_FILES["test"] + ["batches.meta"])
_CIFAR_HINT = "pass --data-dir pointing at cifar-10-batches-py, an image folder or an archive"


def canonical_dataset(name: str) -> str:
    """The DATASETS entry `name` refers to ('CIFAR-10' -> 'cifar10'); DataError if none."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return key


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# Official CIFAR-10 batches


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler for the official CIFAR-10 batch files, read only under their known names.

    They are pickles because that is how the data set is distributed; the content is trusted
    numeric data (a dict of numpy arrays, lists and byte strings). Only numpy's array
    reconstructors may be loaded, so a tampered file cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes byte strings at pickle protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        for mod in (module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"{module}.{name} is not available in this numpy")


def _unpickle(raw: bytes, name: str, where: str) -> dict:
    try:
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:
        raise DataError(
            f"{name} in {where} is not a readable CIFAR-10 batch ({type(e).__name__}: {e}); "
            "download cifar-10-batches-py again"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(
            f"{name} in {where} is not a CIFAR-10 batch (no dict inside); download cifar-10-batches-py again"
        )
    return obj


def _read_batches(tree: Tree, prefix: str, split: str, where: str) -> ImageArrays:
    xs, ys = [], []
    for fname in _BATCH_FILES[split]:
        rel = _join(prefix, fname)
        try:
            raw = tree.read(rel)
        except OSError as e:
            raise DataError(f"cannot read {rel} in {where} ({e}); download cifar-10-batches-py again") from None
        batch = _unpickle(raw, rel, where)
        data, labels = batch.get(b"data"), batch.get(b"labels")
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32
            or labels is None
            or len(labels) != len(data)
        ):
            raise DataError(
                f"{rel} in {where} is not a CIFAR-10 batch (expected uint8 data of shape (n, 3072) "
                "and one label per row); download cifar-10-batches-py again"
            )
        xs.append(data)
        ys.append(np.asarray(labels, dtype=np.int64))
    classes = CIFAR10_CLASSES
    meta = _join(prefix, "batches.meta")
    if tree.isfile(meta):
        names = _unpickle(tree.read(meta), meta, where).get(b"label_names")
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    # rows are the R, G and B planes of a 32x32 image, one after another
    images = torch.from_numpy(np.concatenate(xs).reshape(-1, 3, 32, 32))
    labels_t = torch.from_numpy(np.concatenate(ys))
    if len(labels_t) and int(labels_t.max()) >= len(classes):
        raise DataError(
            f"{where} has label {int(labels_t.max())} but only {len(classes)} class names; "
            "download cifar-10-batches-py again"
        )
    return ImageArrays(images, labels_t, classes)


def _resize_all(arrays: ImageArrays, size: int) -> ImageArrays:
    if arrays.image_size == size:
        return arrays
    images = torch.cat([fit_square(chunk, size) for chunk in arrays.images.split(1024)])
    return ImageArrays(images, arrays.labels, arrays.classes, arrays.skipped, arrays.origin)


# ---------------------------------------------------------------------------------------------
# Trees: a folder or an archive holding batches or image folders


@dataclass(frozen=True)
class _Layout:
    kind: str  # "batches" or "folder"
    prefix: str  # where inside the tree the data sits ("" = the top)
    has_test: bool  # folder: a test/ split exists (otherwise test is held out of train)
    flat: bool  # folder: class folders sit right in `prefix`, with no train/ level
    has_val: bool = False  # folder: a val/ split exists: the test split without test/ (ImageNet's
    #                        train/ + val/), the validation split beside test/

    @property
    def roles(self) -> dict[str, str]:
        """Which folder plays which split (a folder layout with a train/ level)."""
        if self.has_test:
            return {"train": "train", "test": "test", **({"val": "val"} if self.has_val else {})}
        return {"train": "train", "test": "val"} if self.has_val else {"train": "train"}


def _detect_layout(dataset: str, tree: Tree, where: str) -> _Layout:
    top_dirs = [d for d in tree.listdir("") if tree.isdir(d)]
    candidates = [""]
    if "cifar-10-batches-py" in top_dirs:
        candidates.append("cifar-10-batches-py")
    if len(top_dirs) == 1 and top_dirs[0] not in candidates:  # an archive with one folder at the top
        candidates.append(top_dirs[0])
    for p in candidates:
        if dataset == "cifar10" and tree.isfile(_join(p, "data_batch_1")) and tree.isfile(_join(p, "test_batch")):
            return _Layout("batches", p, True, False)
        if tree.isdir(_join(p, "train")):
            return _Layout("folder", p, tree.isdir(_join(p, "test")), False, tree.isdir(_join(p, "val")))
    if dataset == "cifar10":
        raise DataError(
            f"no CIFAR-10 data in {where}: expected cifar-10-batches-py (data_batch_1..5, test_batch) "
            f"or train/<class>/ and test/<class>/ image folders; {_CIFAR_HINT}"
        )
    # no train/: the class folders are at the top (or inside a single top folder)
    if len(top_dirs) == 1 and not any(is_image_name(f) for f in tree.listdir("")):
        inner = top_dirs[0]
        if any(tree.isdir(_join(inner, d)) for d in tree.listdir(inner)):
            return _Layout("folder", inner, False, True)
    return _Layout("folder", "", False, True)


def _class_folders(tree: Tree, d: str, where: str) -> list[str]:
    names = tree.listdir(d)
    classes = [n for n in names if tree.isdir(_join(d, n))]
    shown = f"{d or '.'} in {where}"
    if not classes:
        if any(is_image_name(n) for n in names):
            raise DataError(
                f"{shown} holds images but no class folders; put each class's images in its own folder, "
                "<class>/<image>"
            )
        raise DataError(
            f"no class folders in {shown}; expected <class>/<image files> (or train/<class>/ and test/<class>/)"
        )
    return classes


def _list_images(tree: Tree, d: str, classes: list[str], where: str) -> list[tuple[str, int]]:
    """(path in the tree, label) of every image under the class folders of ``d``."""
    out = []
    for c in _class_folders(tree, d, where):
        files = [f for f in tree.files_under(_join(d, c)) if is_image_name(f)]
        if not files:
            raise DataError(
                f"class folder {_join(d, c)} in {where} has no images; add images to it or remove it"
            )
        out += [(f, classes.index(c)) for f in files]
    return out


def _split_origin(layout: _Layout, d: str) -> str:
    inside = d[len(layout.prefix) + 1:] if layout.prefix and d.startswith(layout.prefix + "/") else d
    return f"{inside}/" if inside and inside != layout.prefix else "the class folders"


def _decode_folder(
    tree: Tree, layout: _Layout, d: str, classes: list[str], image_size: int | None,
    strict: bool, progress: bool, desc: str, where: str,
) -> ImageArrays:
    entries = []
    for f, label in _list_images(tree, d, classes, where):
        name = f[len(layout.prefix) + 1 :] if layout.prefix else f
        entries.append(Entry(name, label, functools.partial(tree.read, f)))
    images, labels, skipped = decode_entries(entries, image_size, strict=strict, progress=progress, desc=desc)
    if len(images) == 0:
        raise DataError(
            f"none of the {len(entries)} image files in {d or '.'} of {where} could be read "
            f"(e.g. {skipped[0]}); check that they are images"
        )
    return ImageArrays(images, labels, classes, skipped, _split_origin(layout, d))


def _build_tree(
    dataset: str, tree: Tree, layout: _Layout, image_size: int | None, strict: bool, progress: bool, where: str
) -> dict[str, ImageArrays]:
    if layout.kind == "batches":
        out = {s: _read_batches(tree, layout.prefix, s, where) for s in SPLITS}
        for s, a in out.items():
            a.origin = "test_batch" if s == "test" else "data_batch_1..5"
        return {s: _resize_all(a, image_size) if image_size else a for s, a in out.items()}
    if dataset == "cifar10" and not (layout.has_test or layout.has_val):
        raise DataError(
            f"{where} has train/ but no test/ folder (nor val/); CIFAR-10 needs both "
            "(use dataset 'folder' to hold a test split out of train/)"
        )
    train_dir = layout.prefix if layout.flat else _join(layout.prefix, "train")
    classes = _class_folders(tree, train_dir, where)
    if len(classes) < 2:
        raise DataError(
            f"need at least 2 classes, found only {classes[0]!r} in {train_dir or '.'} of {where}; "
            "add a folder per class"
        )
    args = (strict, progress)
    desc = f"decoding {dataset} train"
    train = _decode_folder(tree, layout, train_dir, classes, image_size, *args, desc, where)
    if not (layout.has_test or layout.has_val):
        keep, hold = stratified_holdout(train.labels, HOLDOUT_FRACTION, HOLDOUT_SEED)
        test = train.subset(hold)
        test.origin = f"{HOLDOUT_FRACTION:.0%} held out of {train.origin}"
        return {"train": train.subset(keep), "test": test}
    out = {"train": train}
    for split, folder in layout.roles.items():
        if split == "train":
            continue
        d = _join(layout.prefix, folder)
        extra = sorted(set(_class_folders(tree, d, where)) - set(classes))
        if extra:
            raise DataError(
                f"{folder}/ in {where} has class folder(s) {', '.join(extra)} that train/ lacks; "
                "use the same class folders in both"
            )
        # the other splits take the training size, so every split fits one model
        desc = f"decoding {dataset} {folder}"
        out[split] = _decode_folder(tree, layout, d, classes, train.image_size, *args, desc, where)
    return out


def _keep_member(name: str) -> bool:
    return is_image_name(name) or posixpath.basename(name) in _BATCH_NAMES


class _Source:
    """A folder or archive on disk: its cache key, and how to decode it into both splits."""

    def __init__(self, dataset: str, path: Path) -> None:
        self.dataset, self.path, self.where = dataset, path, str(path)
        self.tree: DirTree | None = None
        self.layout: _Layout | None = None
        if path.is_dir():
            self.tree = DirTree(path)
            self.layout = _detect_layout(dataset, self.tree, self.where)
            self.key: dict[str, Any] = {
                "path": str(path),
                "layout": [self.layout.kind, self.layout.prefix, self.layout.has_test, self.layout.flat,
                           self.layout.has_val],
                "stat": self.tree.stat_key(self._key_paths()),
            }
        else:
            st = path.stat()  # an archive is read only when a split is not cached yet
            self.key = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def _key_paths(self) -> list[str]:
        # A folder's mtime changes when entries are added, removed or renamed in it: stat the
        # folders down to the class level (files edited in place are not noticed).
        assert self.tree is not None and self.layout is not None
        tree, lay = self.tree, self.layout
        if lay.kind == "batches":
            names = _BATCH_FILES["train"] + _BATCH_FILES["test"] + ["batches.meta"]
            return [r for r in (_join(lay.prefix, n) for n in names) if tree.isfile(r)]
        if lay.flat:
            splits = [lay.prefix]
        else:
            splits = [_join(lay.prefix, s) for s in (*SPLITS, "val") if tree.isdir(_join(lay.prefix, s))]
        paths = [lay.prefix] + splits
        for d in splits:
            paths += [_join(d, c) for c in tree.listdir(d) if tree.isdir(_join(d, c))]
        return paths

    def build(self, image_size: int | None, strict: bool, progress: bool) -> dict[str, ImageArrays]:
        tree, layout = self.tree, self.layout
        if tree is None:
            tree = ArchiveTree(self.path, _keep_member, progress)
            layout = _detect_layout(self.dataset, tree, self.where)
        assert layout is not None
        return _build_tree(self.dataset, tree, layout, image_size, strict, progress, self.where)


ROLES = ("train", "val", "test")


def describe_data_dir(data_dir) -> str | dict[str, str] | None:
    """A data location as config.json and protocol.json store it: a path, or each split's folder."""
    if isinstance(data_dir, Mapping):
        return {r: str(data_dir[r]) for r in ROLES if data_dir.get(r)}
    return str(data_dir) if data_dir else None


def role_dirs(data_dir) -> dict[str, Path] | None:
    """``{"train": Path, "test": Path[, "val": Path]}`` when ``data_dir`` names each split's folder
    (``--train-dir``/``--val-dir``/``--test-dir``), else None. Each folder holds class folders."""
    if not isinstance(data_dir, Mapping):
        return None
    unknown = sorted(set(data_dir) - set(ROLES))
    if unknown:
        raise DataError(f"unknown split folder(s) {', '.join(unknown)}; name train, test and optionally val")
    dirs = {r: Path(data_dir[r]).expanduser().resolve() for r in ROLES if data_dir.get(r)}
    if "train" not in dirs or "test" not in dirs:
        raise DataError("split folders need at least a train and a test folder (--train-dir and --test-dir); "
                        "--val-dir is optional (without it the validation split is held out of train)")
    for role, d in dirs.items():
        if not d.is_dir():
            raise DataError(f"the {role} folder {d} is not a folder on disk; pass a folder of class folders")
    return dirs


class _RoleSource:
    """Split folders named one by one: each of train, test (and val) is a folder of class folders."""

    def __init__(self, dataset: str, dirs: dict[str, Path]) -> None:
        self.dataset, self.dirs = dataset, dirs
        self.where = ", ".join(f"{r} {d}" for r, d in dirs.items())
        self.trees = {r: DirTree(d) for r, d in dirs.items()}
        self.key: dict[str, Any] = {"dirs": {r: str(d) for r, d in dirs.items()}, "stat": {
            r: t.stat_key([""] + [c for c in t.listdir("") if t.isdir(c)]) for r, t in self.trees.items()}}

    def classes(self) -> list[str]:
        classes = _class_folders(self.trees["train"], "", str(self.dirs["train"]))
        if len(classes) < 2:
            raise DataError(f"need at least 2 classes, found only {classes[0]!r} in {self.dirs['train']}; "
                            "add a folder per class")
        for role, tree in self.trees.items():
            extra = sorted(set(_class_folders(tree, "", str(self.dirs[role]))) - set(classes))
            if extra:
                raise DataError(f"the {role} folder {self.dirs[role]} has class folder(s) {', '.join(extra)} that "
                                "the train folder lacks; use the same class folders in both")
        return classes

    def build(self, image_size: int | None, strict: bool, progress: bool) -> dict[str, ImageArrays]:
        classes, flat = self.classes(), _Layout("folder", "", False, True)
        out: dict[str, ImageArrays] = {}
        for role in ("train", *[r for r in ROLES if r != "train" and r in self.dirs]):
            size = image_size if role == "train" else out["train"].image_size  # every split takes train's size
            out[role] = _decode_folder(self.trees[role], flat, "", classes, size, strict, progress,
                                       f"decoding {self.dataset} {role}", str(self.dirs[role]))
            out[role].origin = f"{self.dirs[role]}/"
        return out

    def files(self, image_size: int | None) -> dict[str, ImageFiles]:
        classes, out = self.classes(), {}
        for role in ("train", *[r for r in ROLES if r != "train" and r in self.dirs]):
            listed = _list_images(self.trees[role], "", classes, str(self.dirs[role]))
            names = [f for f, _ in listed]
            size = image_size or (probe_size(self.dirs[role], names) if role == "train" else out["train"].image_size)
            out[role] = ImageFiles(self.dirs[role], names, torch.tensor([lb for _, lb in listed], dtype=torch.int64),
                                   list(classes), size, f"{self.dirs[role]}/")
        return out


def _download_cifar10(root: Path) -> Path:
    """Fetch the official batches with torchvision into root/cifar-10-batches-py (if not there)."""
    target = root / "cifar-10-batches-py"
    if (target / "data_batch_1").is_file() and (target / "test_batch").is_file():
        return target
    try:
        import torchvision.datasets

        root.mkdir(parents=True, exist_ok=True)
        torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)
    except Exception as e:
        why = " ".join(f"{type(e).__name__}: {e}".split())
        raise DataError(f"could not download CIFAR-10 (no network?): {why}; {_CIFAR_HINT}") from None
    return target


def _has_cifar10(path: Path) -> bool:
    try:
        _detect_layout("cifar10", DirTree(path), str(path))
        return True
    except DataError:
        return False


def _locate(dataset: str, data_dir: str | Path | None, download: bool, cache_root: Path) -> Path:
    if download and dataset != "cifar10":
        raise DataError(f"download is only available for cifar10, not {dataset}; pass data_dir with the images")
    if dataset == "cifar10":
        if data_dir is None:
            root = cache_root
            if not download and not (root / "cifar-10-batches-py" / "data_batch_1").is_file():
                raise DataError(
                    f"no CIFAR-10 location given; {_CIFAR_HINT}, or download it (--download, download=True)"
                )
            return _download_cifar10(root) if download else root / "cifar-10-batches-py"
        path = Path(data_dir).expanduser().resolve()
        if download and not (path.is_file() or (path.is_dir() and _has_cifar10(path))):
            return _download_cifar10(path)
    else:
        if data_dir is None:
            raise DataError(
                "the folder dataset needs data_dir: pass --data-dir pointing at an image folder "
                "(train/<class>/..., test/<class>/...) or an archive of one"
            )
        path = Path(data_dir).expanduser().resolve()
    if not path.exists():
        raise DataError(f"{path} does not exist; {ARCHIVE_HINT}")
    if path.is_file() and not is_archive(path):
        raise DataError(f"{path} is not a folder or a tar/zip archive; {ARCHIVE_HINT}")
    return path


# ---------------------------------------------------------------------------------------------
# Digits (scikit-learn)


def _digits(image_size: int | None) -> ImageArrays:
    from sklearn.datasets import load_digits

    d = load_digits()
    size = image_size or DIGITS_IMAGE_SIZE
    x = torch.from_numpy(d.images).float().mul_(255.0 / 16.0).unsqueeze(1)  # (1797, 1, 8, 8), 0..16 -> 0..255
    # bilinear upscaling: smoother strokes than nearest, values stay in range
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < 8)
    images = x.round_().clamp_(0, 255).to(torch.uint8)
    labels = torch.from_numpy(np.asarray(d.target, dtype=np.int64))
    return ImageArrays(images, labels, [str(i) for i in range(10)], origin="scikit-learn's digits")


# ---------------------------------------------------------------------------------------------
# Public entry points


def _report_skipped(results: dict[str, ImageArrays], strict: bool, what: str) -> None:
    skipped = list(dict.fromkeys(n for a in results.values() for n in a.skipped))
    if not skipped:
        return
    if strict:
        raise DataError(
            f"cannot read image {skipped[0]} of {what} ({len(skipped)} unreadable file(s)); "
            "fix or remove them, or leave strict off to skip them"
        )
    shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    warnings.warn(
        f"skipped {len(skipped)} unreadable image file(s) in {what}: {shown}; they are listed in "
        "ImageArrays.skipped (pass strict=True to fail instead)",
        stacklevel=4,  # the caller of load_split / load_train_val_test
    )


def _load(
    dataset: str, data_dir: str | Path | None, splits: tuple[str, ...], image_size: int | None,
    cache_dir: str | Path | None, download: bool, strict: bool, progress: bool,
) -> dict[str, ImageArrays]:
    name = canonical_dataset(dataset)
    for s in splits:
        if s not in (*SPLITS, "val"):
            raise DataError(f"unknown split {s!r}; use 'train' or 'test' (load_train_val_test gives the validation split)")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"image_size must be a positive integer, got {image_size!r}; pass e.g. 224 or None")
    if name == "digits":
        full = _digits(image_size)
        keep, hold = stratified_holdout(full.labels, HOLDOUT_FRACTION, HOLDOUT_SEED)
        out = {"train": full.subset(keep), "test": full.subset(hold)}
        out["test"].origin = f"{HOLDOUT_FRACTION:.0%} held out of {full.origin}"
        return {s: out[s] for s in splits if s in out}

    cache_root = resolve_cache_dir(cache_dir)
    dirs = role_dirs(data_dir)
    path = dirs["train"] if dirs else _locate(name, data_dir, download, cache_root)
    source = _RoleSource(name, dirs) if dirs else _Source(name, path)
    key = {**source.key, "image_size": image_size}
    every = (*SPLITS, "val")  # val: a source's own validation folder (empty when it has none)
    files = {s: cache_file(cache_root, name, s, key) for s in every}
    results = {s: load_cached(files[s]) for s in splits}
    if any(a is None for a in results.values()):
        built = source.build(image_size, strict, progress)
        train = built["train"]
        none = ImageArrays(train.images[:0], train.labels[:0], train.classes)
        for s in every:  # the other splits come with the same decoding pass: keep them too
            save_cached(files[s], built.get(s, none))
        results = {s: built.get(s, none) for s in splits}
    out = {s: a for s, a in results.items() if a is not None and (s != "val" or len(a))}
    _report_skipped(out, strict, f"{name} at {source.where}")
    return out


def load_split(
    dataset: str,
    data_dir: str | Path | None,
    split: str,
    *,
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
    download: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> ImageArrays:
    """Load one split ('train' or 'test') of a data set as ImageArrays, decoding it only once.

    dataset 'cifar10': data_dir is cifar-10-batches-py (or its parent), a train/<class>/,
    test/<class>/ image folder, or a .tar.gz/.tgz/.tar/.zip of either (read in place);
    download=True fetches the official batches into data_dir (or the cache folder).
    dataset 'folder': any image folder with train/ and test/, or with train/ only or just
    class folders, in which case a fixed, stratified 20% of every class is the test split.
    Images are fitted to image_size (shorter side resized, center crop); with None they keep
    their size when all share one square size, and become 224x224 otherwise. Files with
    image extensions that cannot be read (corrupt, truncated, empty, not an image, no read
    permission) are skipped with one warning and listed in `skipped`, or raise DataError when
    strict; hidden files and folders are ignored; folders that cannot be listed raise.
    dataset 'digits': scikit-learn's 8x8 digits, bilinearly upscaled to 32x32 (or image_size),
    one channel, with a fixed, stratified 20% test split; data_dir is ignored.
    Decoded arrays are cached under cache_dir (default $LENET2VIT_CACHE or
    ~/.cache/lenet2vit), keyed by the source's path, size and mtime, the split and image_size.
    """
    if split not in SPLITS:  # a folder's own val/ comes with load_train_val_test
        raise DataError(f"unknown split {split!r}; use 'train' or 'test' (load_train_val_test gives the validation split)")
    return _load(dataset, data_dir, (split,), image_size, cache_dir, download, strict, progress)[split]


def load_train_val_test(
    dataset: str,
    data_dir: str | Path | None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
    download: bool = False,
    strict: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> tuple[ImageArrays, ImageArrays, ImageArrays]:
    """Load (train, val, test): val is a stratified `val_fraction` of train fixed by `seed`.

    The test split is the source's own (see load_split) and never touched by the validation
    split. A folder with train/, val/ and test/ gives its own val/ as the validation split
    (`val_fraction` is then not used); with train/ and val/ only, val/ is the test split
    (ImageNet's convention). Each split's ``origin`` names the folder it comes from.
    `limit` is for quick runs: train keeps a class-balanced, seeded random subset of at most
    `limit` images (taken before the validation split) and test (and a folder's own val) one
    of at most max(limit // 5, 1) images, the usual 5:1 ratio of train to test.
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of images, got {limit}; pass e.g. 5000 or None")
    parts = _load(dataset, data_dir, (*SPLITS, "val"), image_size, cache_dir, download, strict, progress)
    return _limit_and_split(parts["train"], parts.get("val"), parts["test"], limit, seed, val_fraction)


def streamable(dataset: str, data_dir: str | Path | None) -> bool:
    """Whether a data set is an image folder on disk, the one kind the streaming path reads."""
    if canonical_dataset(dataset) == "digits" or data_dir is None:
        return False
    if isinstance(data_dir, Mapping):  # split folders named one by one
        return all(Path(d).expanduser().is_dir() for d in data_dir.values() if d)
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        return False
    return not any((p / "data_batch_1").is_file() for p in (path, path / "cifar-10-batches-py"))


def index_train_val_test(
    dataset: str,
    data_dir: str | Path | None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    limit: int | None = None,
) -> tuple[ImageFiles, ImageFiles, ImageFiles]:
    """(train, val, test) of an image folder as lists of files, for the streaming path.

    The same layouts, roles, held-out splits and ``limit`` as :func:`load_train_val_test`,
    decided from the folder listing alone: nothing is decoded. The stored size is
    ``image_size``, else the images' own side when they are squares of one size, else 224
    (:func:`~lenet2vit.data.stream.probe_size`). Only a folder on disk streams: an archive
    is decoded in memory (extract it to stream it).
    """
    name = canonical_dataset(dataset)
    if name == "digits":
        raise DataError("the digits data set is decoded in memory; drop --data-mode stream")
    dirs = role_dirs(data_dir)
    if dirs:
        parts = _RoleSource(name, dirs).files(image_size)
        return _limit_and_split(parts["train"], parts.get("val"), parts["test"], limit, seed, val_fraction)
    path = _locate(name, data_dir, False, resolve_cache_dir(None))
    if not path.is_dir():
        raise DataError(f"{path} is an archive; the streaming path reads a folder on disk: extract it "
                        "(e.g. tar -xf / unzip) and pass the folder, or pass --data-mode memory")
    tree, where = DirTree(path), str(path)
    layout = _detect_layout(name, tree, where)
    if layout.kind == "batches":
        raise DataError(f"{where} holds the CIFAR-10 batches, which are decoded in memory; drop --data-mode stream")
    if name == "cifar10" and not (layout.has_test or layout.has_val):
        raise DataError(f"{where} has train/ but no test/ folder (nor val/); CIFAR-10 needs both "
                        "(use dataset 'folder' to hold a test split out of train/)")
    train_dir = layout.prefix if layout.flat else _join(layout.prefix, "train")
    classes = _class_folders(tree, train_dir, where)
    if len(classes) < 2:
        raise DataError(f"need at least 2 classes, found only {classes[0]!r} in {train_dir or '.'} of {where}; "
                        "add a folder per class")

    def files_of(d: str, size: int | None) -> ImageFiles:
        listed = _list_images(tree, d, classes, where)
        names = [f for f, _ in listed]
        return ImageFiles(path, names, torch.tensor([label for _, label in listed], dtype=torch.int64), list(classes),
                          size or probe_size(path, names), _split_origin(layout, d))

    train = files_of(train_dir, image_size)
    if not (layout.has_test or layout.has_val):
        keep, hold = stratified_holdout(train.labels, HOLDOUT_FRACTION, HOLDOUT_SEED)
        parts = {"train": train.subset(keep), "test": train.subset(hold)}
        parts["test"].origin = f"{HOLDOUT_FRACTION:.0%} held out of {train.origin}"
    else:
        parts = {"train": train}
        for split, folder in layout.roles.items():
            if split != "train":
                d = _join(layout.prefix, folder)
                extra = sorted(set(_class_folders(tree, d, where)) - set(classes))
                if extra:
                    raise DataError(f"{folder}/ in {where} has class folder(s) {', '.join(extra)} that train/ lacks; "
                                    "use the same class folders in both")
                parts[split] = files_of(d, train.image_size)  # every split takes the training size
    return _limit_and_split(parts["train"], parts.get("val"), parts["test"], limit, seed, val_fraction)


def _limit_and_split(train, own_val, test, limit: int | None, seed: int, val_fraction: float) -> tuple:
    """(train, val, test) of ImageArrays or ImageFiles: ``limit``'s class-balanced subsets (test
    and a folder's own val at the 5:1 ratio), then the validation split held out of train
    unless the source has its own."""
    if limit is not None:
        train = train.subset(balanced_subset(train.labels, limit, seed))
        test = test.subset(balanced_subset(test.labels, max(limit // 5, 1), seed))
        if own_val is not None:
            own_val = own_val.subset(balanced_subset(own_val.labels, max(limit // 5, 1), seed))
    if own_val is not None:
        return train, own_val, test
    train, val = (split_files if isinstance(train, ImageFiles) else train_val_split)(train, val_fraction, seed)
    return train, val, test


def split_roles(train: ImageArrays, val: ImageArrays, test: ImageArrays) -> dict[str, str]:
    """``{"train": "train/", "val": "10% held out of train/", "test": "val/"}``: where each split comes from."""
    return {"train": train.origin, "val": val.origin, "test": test.origin}
