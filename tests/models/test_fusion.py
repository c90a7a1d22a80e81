"""Inference rewrites of the backbone must not change what it computes."""

from __future__ import annotations

import copy

import pytest
import torch

from models.backbones import build_feature_extractor
from models.fusion import StaticSameConv


def trained_like_statistics(model: torch.nn.Module, seed: int = 0) -> int:
    """Gives every batch-norm running statistics and affine terms a trained network could have.

    A fresh batch-norm has mean 0, variance 1, weight 1, bias 0, where folding it changes nothing:
    a fold that forgot the running mean (or the variance) would still pass. Returns the count.
    """
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.5 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(c, generator=g))
                    m.bias.copy_(0.2 * torch.randn(c, generator=g))
                n += 1
    return n


@pytest.fixture(scope="module")
def pair():
    plain, _ = build_feature_extractor("efficientnet_lite0", ("pixels", "blocks.2", "blocks.3"), pretrained=False)
    assert trained_like_statistics(plain) > 5
    fast = copy.deepcopy(plain)
    fast.optimize_for_inference((64, 64))
    return plain, fast


def test_rewrites_happen(pair) -> None:
    _, fast = pair
    mods = [m for _, stage in fast._stages for m in stage.modules()]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in mods)
    assert sum(isinstance(m, StaticSameConv) for m in mods) >= 3


# The optimised size, two others, and frames kept at their own aspect (odd and even sides).
@pytest.mark.parametrize("size", [64, 72, 57, (96, 40), (41, 104)])
def test_same_maps_and_gradients(pair, size: int | tuple[int, int]) -> None:
    plain, fast = pair
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = plain(xa), fast(xb)
    for k in a:
        assert a[k].shape == b[k].shape
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-4), (k, float((a[k] - b[k]).abs().max()))
    sum(v.square().mean() for v in a.values()).backward()
    sum(v.square().mean() for v in b.values()).backward()
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-3, atol=1e-6)


def test_fingerprint_is_of_the_weights_as_built(pair) -> None:
    plain, fast = pair
    assert fast.weights_sha256 == plain.weights_sha256


def test_moves_and_casts_reach_every_rewritten_convolution(pair) -> None:
    """``.to(device)`` must carry the stem's padded weight, which the body does not register.

    A cast is the CPU-only stand-in for a move to the GPU: both go through ``Module._apply``.
    Before the fix, training on CUDA failed at the stem ("weight type torch.FloatTensor").
    """
    plain, fast = pair
    moved = copy.deepcopy(fast).to(torch.float64)
    statics = [m for _, stage in moved._stages for m in stage.modules() if isinstance(m, StaticSameConv)]
    assert statics and all(m.static_weight.dtype == torch.float64 for m in statics)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    out = moved(x)
    ref = plain.to(torch.float64)(x)
    for k in ref:
        assert torch.allclose(out[k], ref[k], rtol=1e-4, atol=1e-4), k
    plain.to(torch.float32)
    assert moved.weights_sha256 == fast.weights_sha256


def test_other_sizes_keep_their_own_padded_kernel_and_follow_a_cast(pair) -> None:
    """Frames at their own aspect skip the padded copy too; a kernel made before a cast is remade."""
    _, fast = pair
    net = copy.deepcopy(fast)
    statics = [m for _, stage in net._stages for m in stage.modules() if isinstance(m, StaticSameConv)]
    net(torch.rand(1, 3, 96, 40))
    stem = statics[0]
    assert stem.input_hw == (64, 64) and (96, 40) in stem._other
    kernel, _ = stem._other[(96, 40)]
    assert kernel.dtype == torch.float32
    net.to(torch.float64)
    net(torch.rand(1, 3, 96, 40, dtype=torch.float64))
    assert stem._other[(96, 40)][0].dtype == torch.float64
    for i in range(80):  # a bounded cache: sizes beyond it are computed, not kept
        net(torch.rand(1, 3, 33 + i, 35, dtype=torch.float64))
    assert len(stem._other) <= 64
