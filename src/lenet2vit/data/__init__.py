"""Data: sources decoded once into one uint8 tensor, cached on disk, and an in-memory loader;
or, for image folders too large for memory, a streaming loader over the files.

A data set (CIFAR-10 batches or image folders, any image folder or archive, scikit-learn's
digits) is decoded once into ImageArrays (uint8 (N, C, H, W) plus int64 labels) and cached.
Training keeps it on the training device; DeviceLoader draws batches by a seeded permutation
and augments whole batches with tensor ops: no DataLoader, no workers, no per-image Python.
An image folder whose decoded pixels would pass the memory budget stays a list of files
(ImageFiles), and StreamLoader decodes its batches in worker processes (data/stream.py).
"""

from lenet2vit.data.archive import safe_extract
from lenet2vit.data.arrays import DataError, ImageArrays, channel_stats, patch_whitening, train_val_split
from lenet2vit.data.decode import decode_image_bytes
from lenet2vit.data.augment import Augment, PaperAugment, augment_batch, pca_colour_stats, eval_views
from lenet2vit.data.loader import DeviceLoader
from lenet2vit.data.preprocess import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    fit_square,
    is_image_name,
    match_channels,
)
from lenet2vit.data.sources import (
    CIFAR10_CLASSES,
    DATASETS,
    describe_data_dir,
    index_train_val_test,
    load_split,
    load_train_val_test,
    split_roles,
    streamable,
)
from lenet2vit.data.stream import DATA_MODES, ImageFiles, StreamLoader, choose_mode, memory_budget

__all__ = [
    "DataError",
    "ImageArrays",
    "DATASETS",
    "CIFAR10_CLASSES",
    "load_split",
    "load_train_val_test",
    "split_roles",
    "train_val_split",
    "channel_stats",
    "patch_whitening",
    "DeviceLoader",
    "ImageFiles",
    "StreamLoader",
    "DATA_MODES",
    "choose_mode",
    "memory_budget",
    "index_train_val_test",
    "streamable",
    "describe_data_dir",
    "Augment",
    "augment_batch",
    "PaperAugment",
    "pca_colour_stats",
    "eval_views",
    "safe_extract",
    "Preprocess",
    "fit_square",
    "match_channels",
    "is_image_name",
    "IMAGE_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "decode_image_bytes",
]
