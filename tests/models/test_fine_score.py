"""The opt-in image score that also reads the fine bank (issue 11, models/patchcore/fine_score.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.explain import anomaly_grad_cam
from models.explain.gradcam import deepest_layer
from models.patchcore import ModelFileError, PatchCore, PatchCoreConfig
from models.patchcore.fine_score import combine, fine_image_scores, fine_scores_excluding
from models.patchcore.leave_one_out import leave_one_out_scores, score_excluding
from models.patchcore.loo_state import state_from_fit
from models.patchcore.serialization import load_patchcore, save_patchcore

TINY = PatchCoreConfig(
    layers=("blocks.1", "blocks.2", "blocks.3"),
    input_size=64,
    coreset_ratio=0.5,
    pretrained=False,
    feature_stride=8,
    fine_score="max",
    map_layers=None,  # the score reads the fine bank; the map stays the score grid's
)


def _good(n: int, seed: int) -> torch.Tensor:
    return 0.5 + 0.05 * torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _train_batches() -> list[torch.Tensor]:
    return [_good(4, 0), _good(4, 1)]


def _fit(cfg: PatchCoreConfig) -> PatchCore:
    model = PatchCore(cfg)
    model.fit(_train_batches())
    return model


@pytest.fixture(scope="module")
def fitted() -> PatchCore:
    return _fit(TINY)


def _feats(model: PatchCore, x: torch.Tensor) -> dict[str, torch.Tensor]:
    return model.extractor(model.normalize(x))


def test_score_is_the_coarse_and_fine_scores_combined(fitted: PatchCore) -> None:
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        feats = _feats(fitted, x)
        coarse, _ = fitted.score_embedding(fitted.embed_features(feats, (64, 64)), exact=True)
        fine = fine_image_scores(fitted.fine_map, feats, (64, 64))
        got = fitted.predict(x).score
    sc, sf = fitted.score_scale
    torch.testing.assert_close(got, torch.maximum(coarse, fine * sc / sf))
    # The fine score is the largest fine patch distance, in the score bank's units.
    torch.testing.assert_close(fine, fitted.fine_map.patch_scores(feats, (64, 64)).flatten(1).amax(1))
    # The map stays the score grid's unless the map's fine bank was asked for (map_layers).
    assert fitted.predict(x).anomaly_map.shape == (3, 64, 64) and not fitted.map_reads_fine


def test_combine_modes() -> None:
    c, f, scale = torch.tensor([1.0, 4.0]), torch.tensor([6.0, 2.0]), torch.tensor([2.0, 4.0])
    torch.testing.assert_close(combine("max", c, f, scale), torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(combine("sum", c, f, scale), torch.tensor([2.0, 2.5]))
    torch.testing.assert_close(combine("fine", c, f, scale), torch.tensor([3.0, 1.0]))
    with pytest.raises(ValueError):
        combine("mean", c, f, scale)
    with pytest.raises(ValueError):
        PatchCore(replace(TINY, fine_score="mean"))


def test_scales_come_from_training_images_left_out(fitted: PatchCore) -> None:
    """The scales are the median leave-one-out scores of the training images under each bank."""
    fine = fitted.fine_map
    assert fine.bank_source.shape == fine.bank.shape[:1] and int(fine.bank_source.max()) <= 7
    x = torch.cat(_train_batches())
    with torch.no_grad():
        feats = _feats(fitted, x)
        ids = torch.arange(8)
        coarse, _ = score_excluding(fitted, fitted.embed_features(feats, (64, 64)), ids)
        fine_loo = fine_scores_excluding(fine, fine.raw_embed(feats, (64, 64)), ids)
        plain = fine_image_scores(fine, feats, (64, 64))
        no_exclusion = fine_scores_excluding(fine, fine.raw_embed(feats, (64, 64)), torch.full((8,), -1))
    # (the fit kept fp16 features of its images, hence the tolerance)
    want = torch.stack([torch.quantile(coarse, 0.5), torch.quantile(fine_loo, 0.5)])
    torch.testing.assert_close(fitted.score_scale, want, rtol=2e-3, atol=0)
    torch.testing.assert_close(no_exclusion, plain, rtol=1e-4, atol=1e-4)
    assert bool((fine_loo >= plain - 1e-4).all()) and bool((fine_loo > plain + 1e-3).any())


def test_calibration_reads_the_same_score() -> None:
    """Leave-one-out scores that set the threshold are the combined score, not the coarse one:
    from the fit's kept features (no second pass) and from the images again alike."""
    x = torch.cat(_train_batches())
    results = []
    for kept in (True, False):
        model = _fit(TINY)
        assert state_from_fit(model) is None  # no update state: its kept patches are the coarse bank's
        assert model.fit_rows is not None and model.fit_fine_loo is not None  # left for the scores below
        if not kept:
            model.fit_rows = None
        loo, maps = leave_one_out_scores(model, _train_batches())
        assert model.fit_rows is None and model.fit_fine_loo is None and maps.shape == (8, 64, 64)
        with torch.no_grad():
            feats = _feats(model, x)
            ids = torch.arange(8)
            coarse, _ = score_excluding(model, model.embed_features(feats, (64, 64)), ids)
            fine = fine_scores_excluding(model.fine_map, model.fine_map.raw_embed(feats, (64, 64)), ids)
        want = combine("max", coarse, fine, model.score_scale)
        torch.testing.assert_close(loo, want, rtol=2e-3, atol=0)  # the fit keeps fp16 features
        assert not torch.allclose(loo, coarse, rtol=2e-3, atol=0)
        results.append(loo)
    torch.testing.assert_close(results[0], results[1], rtol=2e-3, atol=0)


@pytest.mark.parametrize("mode", ["max", "sum", "fine"])
def test_gradcam_keeps_a_gradient_path(mode: str) -> None:
    model = _fit(replace(TINY, fine_score=mode))
    assert deepest_layer(model) == "blocks.2"  # the deepest stage both banks read
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    res = anomaly_grad_cam(model, x)
    assert bool(torch.isfinite(res.cam).all())
    assert bool((res.cam.flatten(1).amax(1) > 0).all())
    torch.testing.assert_close(res.score, model.predict(x).score, rtol=1e-4, atol=1e-4)
    # The argmax shortcut gives the same value with and without autograd, and a gradient.
    xg = x.clone().requires_grad_(True)
    feats = _feats(model, xg)
    s = fine_image_scores(model.fine_map, feats, (64, 64))
    with torch.no_grad():
        torch.testing.assert_close(s.detach(), fine_image_scores(model.fine_map, _feats(model, x), (64, 64)))
    s.sum().backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0


def test_save_load_and_old_models_keep_the_old_score(fitted: PatchCore, tmp_path: Path) -> None:
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    save_patchcore(fitted, tmp_path / "new")
    loaded, _ = load_patchcore(tmp_path / "new")
    torch.testing.assert_close(loaded.predict(x).score, fitted.predict(x).score)
    torch.testing.assert_close(loaded.score_scale, fitted.score_scale)
    # A model.json without "fine_score" (all saved before the setting): the score bank's score alone.
    old = _fit(replace(TINY, fine_score=None))
    save_patchcore(old, tmp_path / "old")
    doc_path = tmp_path / "old" / "model.json"
    doc = json.loads(doc_path.read_text())
    assert "fine_score" not in doc["config"]  # the model.json it always had, readable by older versions
    doc_path.write_text(json.dumps(doc))
    reloaded, _ = load_patchcore(tmp_path / "old")
    assert reloaded.config.fine_score is None and reloaded.fine_map is None
    with torch.no_grad():
        plain, _ = old.score_embedding(old.embed(x), exact=True)
    torch.testing.assert_close(reloaded.predict(x).score, plain, rtol=1e-5, atol=1e-5)


def test_a_fine_score_model_without_its_scales_is_refused(tmp_path: Path) -> None:
    """A coarse model's files under a config that claims the fine score: refused, never scored coarse."""
    old = _fit(replace(TINY, fine_score=None))
    save_patchcore(old, tmp_path / "m")
    doc_path = tmp_path / "m" / "model.json"
    doc = json.loads(doc_path.read_text())
    doc["config"]["fine_score"] = "max"
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="fine_score"):
        load_patchcore(tmp_path / "m")
