"""Grad-CAM, occlusion, saliency and the defect head on tiny random-weight models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy.stats import spearmanr

from models.explain import (
    DEFECT_CENTRED,
    DefectHead,
    anomaly_grad_cam,
    deepest_layer,
    defect_centred_features,
    defect_grad_cam,
    describe,
    extract_descriptor,
    extract_pooled,
    fit_defect_head,
    occlusion_map,
    saliency_map,
    stage_module,
)
from models.patchcore import PatchCore, PatchCoreConfig

SIZE = 64


def good_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.5 + 0.05 * torch.randn(n, 3, SIZE, SIZE, generator=g)).clamp(0, 1)


def with_square(images: torch.Tensor, corners: list[tuple[int, int]], side: int = 14) -> torch.Tensor:
    out = images.clone()
    for i, (y, x) in enumerate(corners):
        out[i, :, y : y + side, x : x + side] = 0.0
    return out


@pytest.fixture(scope="module")
def fitted() -> PatchCore:
    cfg = PatchCoreConfig(
        layers=("blocks.1", "blocks.2"), input_size=SIZE, coreset_ratio=0.5, pretrained=False, feature_stride=8
    )
    model = PatchCore(cfg)
    model.fit([good_images(8, 0)])
    return model


CORNERS = [(6, 8), (40, 40), (10, 42), (44, 6)]


def test_gradcam_is_a_nonnegative_finite_map_at_input_size(fitted: PatchCore) -> None:
    x = with_square(good_images(2, 1), CORNERS[:2])
    res = anomaly_grad_cam(fitted, x)
    assert res.cam.shape == (2, SIZE, SIZE)
    assert torch.isfinite(res.cam).all() and (res.cam >= 0).all() and (res.cam.amax((1, 2)) > 0).all()
    # The same forward pass gives the model's own score and map: no second inference.
    pred = fitted.predict(x)
    assert torch.allclose(res.score, pred.score, atol=1e-5)
    assert torch.allclose(res.anomaly_map, pred.anomaly_map, atol=1e-5)


def test_gradcam_matches_a_hand_written_hook_reference(fitted: PatchCore) -> None:
    """Captum's channel weights are the pooled gradients of the score at the default stage."""
    x = with_square(good_images(2, 2), CORNERS[2:])
    assert deepest_layer(fitted) == "blocks.2"
    layer = stage_module(fitted)
    acts: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: acts.__setitem__("a", out))
    try:
        score = fitted.score(x.clone().requires_grad_(True))
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(score.sum(), acts["a"])
    ref = torch.relu((grad.mean((2, 3), keepdim=True) * acts["a"]).sum(1, keepdim=True))
    ref = F.interpolate(ref, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    cam = anomaly_grad_cam(fitted, x).cam
    assert torch.allclose(cam, ref.detach(), rtol=1e-4, atol=1e-6)


def test_gradcam_peak_lands_on_the_defect(fitted: PatchCore) -> None:
    """A square covers 5 % of the image; the peak falls in it (dilated by one feature cell) every time."""
    x = with_square(good_images(4, 3), CORNERS)
    cam = anomaly_grad_cam(fitted, x).cam
    for i, (y, xx) in enumerate(CORNERS):
        py, px = divmod(int(cam[i].argmax()), SIZE)
        assert y - 8 <= py < y + 14 + 8 and xx - 8 <= px < xx + 14 + 8, (i, py, px)


def test_gradcam_changes_when_the_backbone_is_reinitialised(fitted: PatchCore) -> None:
    x = with_square(good_images(2, 4), CORNERS[:2])
    before = anomaly_grad_cam(fitted, x).cam
    again = anomaly_grad_cam(fitted, x).cam
    assert torch.equal(before, again)  # deterministic, so any change below is the weights'
    random = fitted.with_random_backbone(seed=123)
    assert torch.equal(random.memory_bank, fitted.memory_bank)
    after = anomaly_grad_cam(random, x).cam
    for i in range(2):
        rho = spearmanr(before[i].ravel().numpy(), after[i].ravel().numpy()).statistic
        assert rho < 0.9, rho


def test_occlusion_and_saliency_shapes_and_focus(fitted: PatchCore) -> None:
    x = with_square(good_images(1, 5), CORNERS[:1])
    occ = occlusion_map(fitted, x, window=16, stride=8, per_eval=49)  # 7 x 7 positions: fast
    sal = saliency_map(fitted, x, sigma=1.0)
    for m in (occ, sal):
        assert m.shape == (1, SIZE, SIZE) and torch.isfinite(m).all() and (m >= 0).all()
    for i, (y, xx) in enumerate(CORNERS[:1]):
        inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        inside[y : y + 14, xx : xx + 14] = True
        assert occ[i][inside].mean() > 2 * occ[i][~inside].mean()


def _two_class_data(model: PatchCore) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: dark squares; class 1: bright stripes. Easy, so a working fit is exact."""
    base = good_images(12, 6)
    dark = with_square(base[:6], [(10 + 3 * i, 12) for i in range(6)])
    bright = base[6:].clone()
    bright[:, :, 20:26, :] = 1.0
    feats = extract_pooled(model, [dark, bright])
    return feats, torch.tensor([0] * 6 + [1] * 6)


def test_defect_head_trains_predicts_and_round_trips_through_safetensors(fitted: PatchCore, tmp_path: Path) -> None:
    feats, labels = _two_class_data(fitted)
    head = fit_defect_head(feats, labels, ["chip", "dirt"], list(fitted.config.layers))
    assert feats.shape[1] == 2 * (24 + 40)  # mean and max of blocks.1 (24 ch) and blocks.2 (40 ch)
    assert (head(feats).argmax(1) == labels).all()
    probs = head.probabilities(feats)
    assert torch.allclose(probs.sum(1), torch.ones(12))
    save_file(head.tensors(), str(tmp_path / "h.safetensors"))
    back = DefectHead.from_tensors(["chip", "dirt"], head.layers, load_file(str(tmp_path / "h.safetensors")))
    assert torch.equal(back(feats), head(feats))


def test_defect_head_refuses_fewer_than_two_classes_or_an_empty_class(fitted: PatchCore) -> None:
    feats, labels = _two_class_data(fitted)
    with pytest.raises(ValueError, match="at least two"):
        fit_defect_head(feats[:6], labels[:6], ["chip"], ["blocks.2"])
    with pytest.raises(ValueError, match="no training examples"):
        fit_defect_head(feats[:6], labels[:6], ["chip", "dirt"], ["blocks.2"])


def test_defect_gradcam_goes_through_the_head(fitted: PatchCore) -> None:
    feats, labels = _two_class_data(fitted)
    head = fit_defect_head(feats, labels, ["chip", "dirt"], list(fitted.config.layers))
    x = with_square(good_images(1, 7), [(8, 8)])
    cams = [defect_grad_cam(fitted, head, x, k) for k in (0, 1)]
    for cam in cams:
        assert cam.shape == (1, SIZE, SIZE) and torch.isfinite(cam).all() and (cam >= 0).all()
    assert not torch.allclose(cams[0], cams[1])  # the class index reaches the gradient


def test_defect_centred_descriptor_reads_where_the_map_stands_out() -> None:
    g = torch.Generator().manual_seed(0)
    feats = {"a": torch.randn(2, 5, 4, 4, generator=g), "b": torch.randn(2, 3, 8, 8, generator=g)}
    patch = torch.ones(2, 4, 4)
    patch[0, 1, 2] = 5.0  # one patch stands out of frame 0; frame 1's map is flat
    d = defect_centred_features(feats, ["a", "b"], patch)
    assert d.shape == (2, 8)
    assert torch.allclose(d[0, :5], feats["a"][0, :, 1, 2], atol=1e-6)  # all weight on the defect's cell
    assert torch.allclose(d[1, :5], feats["a"][1].mean((1, 2)), atol=1e-6)  # flat map: the plain mean
    assert torch.allclose(d[1, 5:], feats["b"][1].mean((1, 2)), atol=1e-6)
    with pytest.raises(ValueError, match="patch scores"):
        describe(feats, ["a"], DEFECT_CENTRED)
    with pytest.raises(ValueError, match="unknown defect descriptor"):
        describe(feats, ["a"], "whole", patch)


def test_defect_centred_head_and_gate_features_match_training_in_the_one_pass(fitted: PatchCore) -> None:
    """What the station's one forward pass computes equals what training extracted (no second pass)."""
    layers = list(fitted.config.layers)
    x = with_square(good_images(4, 3), CORNERS)
    train = extract_descriptor(fitted, [x], layers, DEFECT_CENTRED)
    labels = torch.tensor([0, 1, 0, 1])
    head = fit_defect_head(train, labels, ["chip", "dirt"], layers, descriptor=DEFECT_CENTRED)
    res = anomaly_grad_cam(fitted, x, None, head, layers, DEFECT_CENTRED)
    assert res.pooled is not None and res.defect_logits is not None
    assert torch.allclose(res.pooled, train, atol=1e-4, rtol=1e-4)
    assert torch.allclose(res.defect_logits, head(train), atol=1e-3)
    assert not torch.allclose(train, extract_pooled(fitted, [x])[:, : train.shape[1]])
    cam = defect_grad_cam(fitted, head, x[:1], 0)
    assert cam.shape == (1, SIZE, SIZE) and torch.isfinite(cam).all()
