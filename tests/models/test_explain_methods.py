"""The on-demand attributions (LIME, KernelSHAP, GradientSHAP, Deep Taylor, CAM) on tiny random models."""

from __future__ import annotations

import pytest
import torch

from models.explain import extract_pooled, fit_defect_head, pooled_features
from models.explain.cam import cam_parts, defect_cam
from models.explain.deep_taylor import DeepTaylorNet, deep_taylor_map
from models.explain.gradient_shap import gradient_shap_map
from models.explain.perturbation import superpixel_attribution
from models.fusion import StaticSameConv
from models.patchcore import PatchCore, PatchCoreConfig

SIZE = 64


def good_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.5 + 0.05 * torch.randn(n, 3, SIZE, SIZE, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def fitted() -> PatchCore:
    cfg = PatchCoreConfig(
        layers=("pixels", "blocks.1", "blocks.2"),
        input_size=SIZE,
        coreset_ratio=0.5,
        pretrained=False,
        feature_stride=8,
    )
    model = PatchCore(cfg)
    model.fit([good_images(8, 0)])
    return model


def with_square(y: int, x: int, side: int = 14) -> torch.Tensor:
    img = good_images(1, 5)
    img[:, :, y : y + side, x : x + side] = 0.0
    return img


def grid_mask(cells: int = 8) -> torch.Tensor:
    """Square superpixels of SIZE / cells pixels: the square defect below fills whole cells."""
    idx = torch.arange(SIZE) // (SIZE // cells)
    return idx[:, None] * cells + idx[None, :]


@pytest.mark.parametrize("method", ["lime", "kernelshap"])
def test_superpixel_methods_are_constant_per_segment_and_find_the_defect(fitted: PatchCore, method: str) -> None:
    x = with_square(16, 40, side=16)  # exactly cells (2, 5), (2, 6), (3, 5), (3, 6)
    mask = grid_mask()
    attr = superpixel_attribution(
        fitted.score, x, mask, good_images(1, 9), method=method, n_samples=96, per_eval=48, seed=1
    )
    assert attr.shape == (1, SIZE, SIZE) and torch.isfinite(attr).all()
    for seg in mask.unique()[:5]:
        assert attr[0][mask == seg].unique().numel() == 1  # one weight per superpixel
    top = int(mask.flatten()[attr[0].flatten().argmax()])
    assert top in {2 * 8 + 5, 2 * 8 + 6, 3 * 8 + 5, 3 * 8 + 6}, f"top superpixel {top} is not the defect"


def test_gradient_shap_is_a_finite_map_that_depends_on_the_baseline(fitted: PatchCore) -> None:
    x = with_square(10, 10)
    a = gradient_shap_map(fitted.score, x, good_images(2, 3), n_samples=4, seed=0)
    b = gradient_shap_map(fitted.score, x, x.clone(), n_samples=4, stdevs=0.0, seed=0)
    assert a.shape == (1, SIZE, SIZE) and torch.isfinite(a).all() and a.abs().sum() > 0
    assert b.abs().max() < 1e-6 * max(1.0, float(a.abs().max()))  # x - baseline = 0: no attribution


def test_deep_taylor_net_rebuilds_the_score_and_its_map_points_at_the_defect(fitted: PatchCore) -> None:
    x = with_square(36, 8)
    net = DeepTaylorNet(fitted)
    assert not any(isinstance(m, StaticSameConv) for m in net.modules())  # LRP sees every convolution
    torch.testing.assert_close(net(x), fitted.score(x), rtol=1e-4, atol=1e-4)
    m = deep_taylor_map(fitted, x, net=net)
    assert m.shape == (1, SIZE, SIZE) and torch.isfinite(m).all()
    inside = m[0, 36:50, 8:22].clamp_min(0).mean()
    outside = m[0, :30, 30:].clamp_min(0).mean()
    assert inside > outside
    # LRP rewrites weights during its passes: the model itself must be untouched.
    torch.testing.assert_close(net(x), fitted.score(x), rtol=1e-4, atol=1e-4)


def test_deep_taylor_net_pads_a_frame_of_another_size_as_the_model_does(fitted: PatchCore) -> None:
    """A frame kept at its own aspect meets the convolutions at another size, with another pad."""
    x = torch.nn.functional.interpolate(with_square(20, 8), size=(SIZE + 9, SIZE // 2 + 3), mode="bilinear")
    assert (x.shape[-2], x.shape[-1]) != fitted.config.input_hw
    nominal = DeepTaylorNet(fitted)
    own = DeepTaylorNet(fitted, input_hw=(int(x.shape[-2]), int(x.shape[-1])))
    torch.testing.assert_close(own(x), fitted.score(x), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(nominal(x), fitted.score(x), rtol=1e-4, atol=1e-4)  # the pad the fix is for
    m = deep_taylor_map(fitted, x, net=own)
    assert m.shape == (1, x.shape[-2], x.shape[-1]) and torch.isfinite(m).all()


@pytest.fixture(scope="module")
def head(fitted: PatchCore):
    imgs = torch.cat([with_square(8, 8), with_square(40, 40), good_images(4, 7)])
    feats = extract_pooled(fitted, [imgs])
    return fit_defect_head(feats, torch.tensor([0, 1, 0, 1, 0, 1]), ["a", "b"], list(fitted.config.layers))


def test_cam_parts_decompose_the_class_logit_exactly(fitted: PatchCore, head) -> None:
    x = torch.cat([with_square(8, 8), with_square(30, 20)])
    feats = fitted.extractor(fitted.normalize(x))
    pooled = pooled_features(feats, head.layers)
    for k in range(2):
        parts = cam_parts(fitted, head, x, k)
        total = sum(p.mean(dim=(1, 2)) for p in parts)
        w = head.linear.weight[k]
        expected = ((pooled - head.feature_mean) * head.feature_scale) @ w + head.feature_mean * head.feature_scale @ w
        torch.testing.assert_close(total, expected, rtol=1e-3, atol=1e-3)
    cam = defect_cam(fitted, head, x, 0)
    assert cam.shape == (2, SIZE, SIZE) and (cam >= 0).all()
    assert not torch.allclose(cam, defect_cam(fitted, head, x, 1))  # each class has its own map


def test_deep_taylor_of_the_defect_head_gives_a_map(fitted: PatchCore, head) -> None:
    m = deep_taylor_map(fitted, with_square(8, 8), head=head, class_index=1)
    assert m.shape == (1, SIZE, SIZE) and torch.isfinite(m).all() and m.abs().sum() > 0
