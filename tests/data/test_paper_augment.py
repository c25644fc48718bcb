"""The papers' augmentation mechanics: PCA lighting, rescale crops, scale jitter, 10-crop views."""

from __future__ import annotations

import pytest
import torch

from lenet2vit.data import ImageArrays, PaperAugment, pca_colour_stats, eval_views
from lenet2vit.data.augment import paper_augment_batch, random_resized_crop
from lenet2vit.data.loader import DeviceLoader


def _coloured_images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    # correlated channels: a shared brightness plus small per-channel noise
    base = torch.rand(n, 1, 8, 8, generator=g) * 200
    return (base + torch.rand(n, 3, 8, 8, generator=g) * 40).to(torch.uint8)


def test_pca_stats_are_the_eigen_decomposition_of_the_rgb_covariance():
    images = _coloured_images()
    vals, vecs = pca_colour_stats(images)
    px = images.permute(0, 2, 3, 1).reshape(-1, 3).double() / 255
    cov = torch.cov(px.T)
    V, lam = torch.tensor(vecs, dtype=torch.float64), torch.tensor(vals, dtype=torch.float64)
    rebuilt = V @ torch.diag(lam) @ V.T
    assert torch.allclose(rebuilt, cov, atol=1e-9)
    assert vals[-1] > 10 * vals[0]  # one dominant (brightness) direction


def test_pca_noise_has_the_stored_covariance():
    vals, vecs = pca_colour_stats(_coloured_images())
    sigma = 0.1
    aug = PaperAugment(pca_lighting=sigma, eigvals=tuple(vals), eigvecs=tuple(map(tuple, vecs)))
    x = torch.zeros(20000, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 1.0])
    out = paper_augment_batch(x, aug, std, torch.Generator().manual_seed(0))
    shift = out.view(-1, 3) * std  # back to the [0, 1] scale
    # delta = V diag(lambda) alpha, alpha ~ N(0, sigma^2)  =>  cov = sigma^2 V diag(lambda^2) V^T
    V, lam = torch.tensor(vecs), torch.tensor(vals)
    expected = sigma**2 * V @ torch.diag(lam**2) @ V.T
    got = torch.cov(shift.T.double())
    assert torch.allclose(got, expected.double(), rtol=0.1, atol=expected.abs().max().item() * 0.05)
    # every pixel of an image gets the same shift
    img = paper_augment_batch(torch.zeros(2, 3, 4, 4), aug, std, torch.Generator().manual_seed(1))
    assert torch.allclose(img, img[:, :, :1, :1].expand_as(img))


def test_rescale_crop_keeps_size_and_takes_windows_of_the_upscaled_image():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(5, 2, 1, 1)
    out = random_resized_crop(x, 1.5, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.equal(out[:, 0], out[:, 1])  # channels share the window
    assert not torch.equal(out, x)


def test_scale_jitter_draws_a_ratio_in_range_and_is_seeded():
    aug = PaperAugment(scale_jitter=(256 / 224, 512 / 224))
    x = torch.randn(4, 3, 16, 16)
    a = paper_augment_batch(x, aug, torch.ones(3), torch.Generator().manual_seed(3))
    b = paper_augment_batch(x, aug, torch.ones(3), torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)


def test_ten_crop_returns_ten_views_of_the_input_size():
    x = torch.randn(2, 3, 32, 32)
    views = eval_views(x, "10crop")
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[5], views[0].flip(-1))  # second five are the mirrors
    assert len(eval_views(x, "flip")) == 2 and eval_views(x, "none")[0] is x


def test_translate_views_are_the_image_and_its_mirror_shifted_one_pixel():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    views = eval_views(x, "translate")
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    assert views[0] is x and torch.equal(views[1], x.flip(-1))
    down_right, up_left = views[2], views[3]
    assert torch.equal(down_right[..., 1:, 1:], x[..., :-1, :-1])  # content moved one pixel down and right
    assert torch.equal(up_left[..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(down_right[..., 0, 1:], x[..., 1, :-1])  # the new border row reflects the image
    assert torch.equal(views[4], down_right.flip(-1)) and torch.equal(views[5], up_left.flip(-1))


def test_evaluate_averages_the_views():
    from lenet2vit.engine.loop import evaluate

    class Probe(torch.nn.Module):
        """Predicts class 0 for any input whose left half is brighter than its right half."""

        def forward(self, x):
            d = x[..., : x.shape[-1] // 2].mean((1, 2, 3)) - x[..., x.shape[-1] // 2 :].mean((1, 2, 3))
            return torch.stack([d, -d], 1) * 100

    x = torch.zeros(1, 3, 8, 8)
    x[..., :4] = 1.0
    y = torch.tensor([0])
    plain = evaluate(Probe(), [(x, y)], device=torch.device("cpu"))
    flipped = evaluate(Probe(), [(x, y)], device=torch.device("cpu"), tta="flip")
    assert plain["top1"] == 1.0
    # half the views say 0, half say 1: the average is a coin toss (loss = log 2)
    assert flipped["loss"] == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-3)


def test_loader_applies_paper_augment_only_when_asked():
    arr = ImageArrays(images=_coloured_images(16), labels=torch.zeros(16, dtype=torch.long), classes=["a"])
    plain = DeviceLoader(arr, 8, shuffle=False)
    aug = DeviceLoader(arr, 8, shuffle=False, paper_augment=PaperAugment(rescale=1.5))
    a, b = next(iter(plain))[0], next(iter(aug))[0]
    assert a.shape == b.shape and not torch.equal(a, b)
