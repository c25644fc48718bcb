"""ImageArrays, splits, statistics, batched augmentation and the in-memory DeviceLoader."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lenet2vit.data import (
    Augment,
    DataError,
    DeviceLoader,
    ImageArrays,
    augment_batch,
    channel_stats,
    patch_whitening,
    train_val_split,
)
from lenet2vit.data.preprocess import normalisation, to_input


def coded(n: int = 64, classes: int = 4, size: int = 8) -> ImageArrays:
    """Images whose every pixel encodes the label (never 0, so padding stays distinguishable)."""
    labels = torch.arange(n) % classes
    images = (labels * 40 + 30).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, size, size).contiguous()
    return ImageArrays(images, labels, [f"c{i}" for i in range(classes)])


def identified(n: int = 50, size: int = 6) -> ImageArrays:
    """Random images with one class per image, so labels identify samples."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return ImageArrays(images, torch.arange(n), [str(i) for i in range(n)])


def plain(loader_arrays: ImageArrays, **kw) -> DeviceLoader:
    return DeviceLoader(loader_arrays, kw.pop("batch_size", 16), mean=(0.0,), std=(1.0,), **kw)


def test_image_arrays_checks_and_subsets():
    a = identified(10)
    assert len(a) == 10 and a.image_size == 6 and a.channels == 3
    assert torch.equal(a.subset(torch.tensor([3, 1])).labels, torch.tensor([3, 1]))
    assert torch.equal(a.subset(slice(2, 4)).images, a.images[2:4])
    assert torch.equal(a.subset(a.labels % 2 == 0).labels, torch.arange(0, 10, 2))
    assert "n=10" in repr(a)
    with pytest.raises(DataError, match="uint8"):
        ImageArrays(a.images.float(), a.labels, a.classes)
    with pytest.raises(DataError, match="int64"):
        ImageArrays(a.images, a.labels[:5], a.classes)
    with pytest.raises(DataError, match="labels must lie"):
        ImageArrays(a.images, a.labels, a.classes[:3])


def test_train_val_split_is_stratified_disjoint_and_seeded():
    # one class per sample id would defeat stratification: ids live in the pixels instead
    n = 300
    ids = torch.arange(n)
    images = torch.stack([ids // 256, ids % 256, torch.zeros(n, dtype=torch.long)], 1)
    a = ImageArrays(images.to(torch.uint8).view(n, 3, 1, 1).contiguous(), ids % 3, ["a", "b", "c"])

    def sample_ids(part: ImageArrays) -> list[int]:
        return (part.images[:, 0, 0, 0].long() * 256 + part.images[:, 1, 0, 0].long()).tolist()

    train, val = train_val_split(a, 0.1, seed=1)
    assert len(val) == 30 and len(train) == 270
    assert torch.equal(torch.bincount(val.labels), torch.tensor([10, 10, 10]))
    assert not set(sample_ids(train)) & set(sample_ids(val))
    assert sorted(sample_ids(train) + sample_ids(val)) == list(range(n))
    assert sample_ids(train_val_split(a, 0.1, seed=1)[1]) == sample_ids(val)
    assert sample_ids(train_val_split(a, 0.1, seed=2)[1]) != sample_ids(val)
    assert len(train_val_split(a, 0.0, seed=0)[1]) == 0
    with pytest.raises(DataError, match=r"\[0, 1\)"):
        train_val_split(a, 1.0, seed=0)


def test_channel_stats_matches_float_computation():
    a = identified(40, 5)
    mean, std = channel_stats(a)
    x = a.images.double() / 255
    assert torch.allclose(torch.tensor(mean, dtype=torch.double), x.mean(dim=(0, 2, 3)), atol=1e-9)
    assert torch.allclose(torch.tensor(std, dtype=torch.double), x.std(dim=(0, 2, 3), unbiased=False), atol=1e-9)


def test_patch_whitening_filters_whiten_the_patches_a_convolution_sees():
    g = torch.Generator().manual_seed(0)
    smooth = F.avg_pool2d(torch.rand(300, 3, 14, 14, generator=g), 3, 1)  # neighbouring pixels correlate
    images = (smooth * 255).round().to(torch.uint8)  # (300, 3, 12, 12)
    mean, std = [0.5, 0.4, 0.6], [0.2, 0.25, 0.3]
    eigvals, filters = patch_whitening(images, mean, std, (2, 2), eps=0.0)
    assert filters.shape == (12, 3, 2, 2) and bool((eigvals[:-1] >= eigvals[1:]).all())  # leading direction first
    scale, shift = normalisation(mean, std)
    out = F.conv2d(to_input(images, scale, shift).double(), filters.double())  # every 2x2 window, as a conv sees it
    flat = out.permute(1, 0, 2, 3).reshape(12, -1)
    assert torch.allclose(flat @ flat.T / flat.shape[1], torch.eye(12, dtype=torch.double), atol=1e-3)
    # as the network sees them: resized first, and a strided subset when the patches would be many
    _, big = patch_whitening(images, mean, std, (2, 2), size=24, eps=0.0)
    assert not torch.allclose(big, filters, atol=1e-2)
    assert torch.allclose(patch_whitening(images[::2], mean, std, (2, 2), eps=0.0)[1].abs(),
                          patch_whitening(images, mean, std, (2, 2), max_patches=150 * 121, eps=0.0)[1].abs(), atol=1e-4)
    with pytest.raises(DataError, match="smaller than the 13x13 filters"):
        patch_whitening(images, mean, std, (13, 13))


def reference_augment(x: torch.Tensor, aug: Augment, g: torch.Generator) -> torch.Tensor:
    """Per-image crop and flip with the same draws, torchvision RandomCrop(padding=p) style."""
    b, _, h, w = x.shape
    p = aug.crop_padding
    dy = torch.randint(0, 2 * p + 1, (b, 1), generator=g)[:, 0] if p else torch.zeros(b, dtype=torch.long)
    dx = torch.randint(0, 2 * p + 1, (b, 1), generator=g)[:, 0] if p else torch.zeros(b, dtype=torch.long)
    flip = torch.randint(0, 2, (b, 1), generator=g)[:, 0].bool() if aug.flip else torch.zeros(b, dtype=torch.bool)
    out = []
    for i in range(b):
        mode = "reflect" if aug.crop_fill == "reflect" and p else "constant"  # torch's own reflect padding
        padded = F.pad(x[i].float(), (p, p, p, p), mode=mode).to(x.dtype)
        img = padded[:, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out.append(img.flip(-1) if flip[i] else img)
    return torch.stack(out)


@pytest.mark.parametrize("aug", [Augment(4, True), Augment(2, False), Augment(0, True), Augment(4, True, crop_fill="reflect"),
                                 Augment(6, False, crop_fill="reflect")])
def test_augment_batch_matches_per_image_reference(aug):
    x = identified(33, 7).images
    got = augment_batch(x, aug, torch.Generator().manual_seed(5))
    want = reference_augment(x, aug, torch.Generator().manual_seed(5))
    assert torch.equal(got, want) and got.dtype == torch.uint8
    as_float = augment_batch(x.float(), aug, torch.Generator().manual_seed(5))
    assert torch.equal(as_float, want.float())
    assert augment_batch(x, Augment(), torch.Generator()) is x
    with pytest.raises(DataError):
        Augment(crop_padding=-1)
    with pytest.raises(DataError, match="crop_fill"):
        Augment(crop_padding=4, crop_fill="mirror")


def test_reflect_padding_never_shows_a_fill_value_and_needs_a_larger_image():
    x = coded(40, size=8).images  # every pixel of an image holds its label's code, never 0
    out = augment_batch(x, Augment(4, True, crop_fill="reflect"), torch.Generator().manual_seed(1))
    assert torch.equal(out, x)  # a constant image mirrors into itself: no zeros come in at the border
    zero = augment_batch(x, Augment(4, True), torch.Generator().manual_seed(1))
    assert (zero == 0).any()  # ... where zero padding does
    with pytest.raises(DataError, match="larger than that"):
        augment_batch(x, Augment(8, False, crop_fill="reflect"), torch.Generator())


def test_alternate_flip_mirrors_each_image_in_every_other_epoch():
    n, size = 40, 6
    a = identified(n, size)
    loader = plain(a, batch_size=8, shuffle=True, seed=3, augment=Augment(0, True, alternate_flip=True))
    flipped = []  # per epoch: which samples (by label) came out mirrored
    for _ in range(4):
        seen = torch.zeros(n, dtype=torch.bool)
        for x, y in loader:
            orig = a.images[y].float() / 255
            mirrored = torch.isclose(x, orig.flip(-1)).flatten(1).all(1)
            assert bool((mirrored | torch.isclose(x, orig).flatten(1).all(1)).all())
            seen[y] = mirrored
        flipped.append(seen)
    assert 0.25 * n < int(flipped[0].sum()) < 0.75 * n  # a random half first ...
    assert torch.equal(flipped[1], ~flipped[0]) and torch.equal(flipped[2], flipped[0])  # ... then alternating
    assert torch.equal(flipped[3], ~flipped[0])
    def fresh():
        return plain(a, batch_size=8, shuffle=True, seed=3, augment=Augment(0, True, alternate_flip=True))

    straight, resumed = fresh(), fresh()
    for _ in range(3):
        batches(straight)
    resumed.set_epoch(3)  # a resumed run keeps the schedule
    assert same(batches(resumed), batches(straight))
    with pytest.raises(DataError, match="needs flip"):
        Augment(0, False, alternate_flip=True)


def test_augmentation_keeps_labels_aligned():
    a = coded(200, classes=5, size=8)
    loader = plain(a, batch_size=32, shuffle=True, augment=Augment(crop_padding=3, flip=True), seed=1)
    for _ in range(2):
        for x, y in loader:
            codes = (x * 255).round().long()  # (B, 3, 8, 8): the label code, or 0 where padded
            assert bool((codes.amax(dim=(1, 2, 3)) == y * 40 + 30).all())
            assert bool(((codes == 0) | (codes == (y * 40 + 30).view(-1, 1, 1, 1))).all())


def batches(loader: DeviceLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def test_epochs_are_reproducible_and_differ():
    a = identified(50)
    aug = Augment(2, True)
    l1 = plain(a, shuffle=True, seed=7, augment=aug)
    l2 = plain(a, shuffle=True, seed=7, augment=aug)
    e0, e1, e2 = batches(l1), batches(l1), batches(l1)  # each pass moves to the next epoch
    assert same(e0, batches(l2)) and not same(e0, e1) and not same(e1, e2)
    resumed = plain(a, shuffle=True, seed=7, augment=aug)
    resumed.set_epoch(2)
    assert same(batches(resumed), e2)  # a resumed run sees exactly the same batches
    l1.set_epoch(1)
    assert same(batches(l1), e1)
    assert not same(batches(plain(a, shuffle=True, seed=8, augment=aug)), e0)
    # every pass still shows each sample exactly once
    assert sorted(torch.cat([y for _, y in e0]).tolist()) == list(range(50))


def test_order_length_and_drop_last():
    a = identified(50)
    ordered = plain(a, shuffle=False)
    assert len(ordered) == 4 and ordered.num_samples == 50 and ordered.classes == a.classes
    out = batches(ordered)
    assert torch.equal(torch.cat([y for _, y in out]), torch.arange(50))
    assert torch.allclose(torch.cat([x for x, _ in out]), a.images.float() / 255)
    dropped = plain(a, shuffle=True, drop_last=True)
    got = batches(dropped)
    assert len(dropped) == 3 and len(got) == 3 and all(len(y) == 16 for _, y in got)
    with pytest.raises(DataError):
        DeviceLoader(a, 0, shuffle=True)


def test_normalisation_resize_layout_and_dtype():
    a = identified(20, 6)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x, y = next(iter(DeviceLoader(a, 8, shuffle=False, mean=mean, std=std)))
    want = (a.images[:8].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and torch.allclose(x, want, atol=1e-5)
    big = next(iter(DeviceLoader(a, 8, shuffle=False, image_size=24, channels_last=True, dtype=torch.bfloat16)))[0]
    assert big.shape == (8, 3, 24, 24) and big.dtype == torch.bfloat16
    assert big.is_contiguous(memory_format=torch.channels_last)
    grey = ImageArrays(a.images[:, :1].contiguous(), a.labels, a.classes)
    assert next(iter(DeviceLoader(grey, 4, shuffle=False)))[0].shape == (4, 1, 6, 6)  # default mean fits 1 channel
    with pytest.raises(DataError, match="one value per channel"):
        DeviceLoader(grey, 4, shuffle=False, mean=(0.1, 0.2, 0.3))
    with pytest.raises(DataError, match="std must be positive"):
        DeviceLoader(a, 4, shuffle=False, std=(0.0, 1.0, 1.0))


@pytest.mark.gpu
def test_cuda_loader_gives_the_cpu_batches():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    a = identified(100, 8)
    kw = dict(shuffle=True, seed=3, augment=Augment(2, True))
    cpu = batches(plain(a, **kw))
    gpu = [(x.cpu(), y.cpu()) for x, y in batches(plain(a, device="cuda", **kw))]
    assert all(torch.equal(y1, y2) and torch.allclose(x1, x2) for (x1, y1), (x2, y2) in zip(cpu, gpu))


def test_ranks_share_out_exactly_the_batches_of_one_process_with_every_augmentation():
    """N ranks' shares, put side by side, are one process's batch: crops, flips and the paper recipes' draws."""
    from lenet2vit.data import PaperAugment

    a = identified(64, 8)
    kw = dict(batch_size=16, shuffle=True, seed=5, mean=(0.5,) * 3, std=(0.25,) * 3, drop_last=True,
              augment=Augment(2, True), paper_augment=PaperAugment(rescale=1.25, pca_lighting=0.1,
                                                                  eigvals=(0.2, 0.02, 0.005),
                                                                  eigvecs=((0.58, -0.81, 0.1), (0.58, 0.4, -0.7),
                                                                           (0.57, 0.42, 0.7))))
    one = [b for b in DeviceLoader(a, **kw)]
    ranks = [[b for b in DeviceLoader(a, **kw, rank=r, world_size=2)] for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 4
    for (x, y), (x0, y0), (x1, y1) in zip(one, *ranks):
        assert len(y0) == len(y1) == 8 and torch.equal(torch.cat([y0, y1]), y)
        assert torch.equal(torch.cat([x0, x1]), x)  # the same pixels: no rank repeats another's draws
    assert not torch.equal(ranks[0][0][0], ranks[1][0][0])
