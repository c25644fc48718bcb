"""Data: sources decoded once into one uint8 tensor, cached on disk, and an in-memory loader.

A data set (CIFAR-10 batches or image folders, any image folder or archive, scikit-learn's
digits) is decoded once into ImageArrays (uint8 (N, C, H, W) plus int64 labels) and cached.
Training keeps it on the training device; DeviceLoader draws batches by a seeded permutation
and augments whole batches with tensor ops: no DataLoader, no workers, no per-image Python.
"""

from lenet2vit.data.archive import safe_extract
from lenet2vit.data.arrays import DataError, ImageArrays, channel_stats, train_val_split
from lenet2vit.data.augment import Augment, PaperAugment, augment_batch, pca_colour_stats, eval_views
from lenet2vit.data.loader import DeviceLoader
from lenet2vit.data.sources import CIFAR10_CLASSES, DATASETS, load_split, load_train_val_test

__all__ = [
    "DataError",
    "ImageArrays",
    "DATASETS",
    "CIFAR10_CLASSES",
    "load_split",
    "load_train_val_test",
    "train_val_split",
    "channel_stats",
    "DeviceLoader",
    "Augment",
    "augment_batch",
    "PaperAugment",
    "pca_colour_stats",
    "eval_views",
    "safe_extract",
]
