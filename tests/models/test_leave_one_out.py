"""Leave-one-out scoring: the bank remembers each row's image, and excluding it changes the score."""

import copy
import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.patchcore import PatchCore, PatchCoreConfig, load_patchcore, save_patchcore
from models.patchcore.leave_one_out import leave_one_out_scores, score_excluding
from models.patchcore.serialization import CONFIG_FILE, TENSOR_FILE, file_sha256


def _config(**kw: object) -> PatchCoreConfig:
    base = dict(layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.5, pretrained=False, feature_stride=8)
    base.update(kw)
    return PatchCoreConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def good() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.5 + 0.05 * torch.randn(8, 3, 64, 64, generator=g)


@pytest.fixture(scope="module")
def fitted(good: torch.Tensor) -> PatchCore:
    model = PatchCore(_config())
    model.fit([good[:3], good[3:]])  # uneven batches: ids must still follow fit order
    return model


def test_bank_source_names_the_image_each_row_came_from(fitted: PatchCore, good: torch.Tensor) -> None:
    src = fitted.bank_source
    assert src.shape == (fitted.memory_bank.shape[0],)
    assert int(src.min()) >= 0 and int(src.max()) <= 7
    # Every bank row is exactly one of its source image's patch features.
    emb = fitted.embed(good)
    flat = emb.permute(0, 2, 3, 1).reshape(8, -1, emb.shape[1])
    for row, s in zip(fitted.memory_bank[:20], src[:20], strict=True):
        d = torch.cdist(row[None], flat[int(s)].float()).min()
        assert d < 1e-2


def test_chunked_coreset_keeps_sources_aligned(good: torch.Tensor) -> None:
    # 8 images x 64 patches = 512 rows; chunks of 100 force several chunked searches.
    model = PatchCore(_config(coreset_chunk_rows=100))
    model.fit([good[i : i + 1] for i in range(8)])
    assert model.fit_rows is None  # a chunked fit does not keep its features
    emb = model.embed(good)
    flat = emb.permute(0, 2, 3, 1).reshape(8, -1, emb.shape[1])
    for row, s in zip(model.memory_bank, model.bank_source, strict=True):
        assert torch.cdist(row[None], flat[int(s)]).min() < 1e-2


@pytest.mark.parametrize("k", [1, 3])
def test_excluding_nothing_gives_the_ordinary_score(fitted: PatchCore, k: int) -> None:
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model = copy.copy(fitted)  # shares the bank; only the image score's k differs
    model.config = replace(fitted.config, score_topk=k)
    with torch.no_grad():
        s, patch = score_excluding(model, model.embed(x), torch.full((3,), -1))
    pred = model.predict(x)
    assert torch.allclose(s, pred.score, rtol=1e-4, atol=1e-4)
    assert torch.allclose(patch, pred.patch_scores, rtol=1e-3, atol=1e-3)


def test_kept_fit_features_give_the_same_scores_as_a_second_pass(good: torch.Tensor) -> None:
    model = PatchCore(_config())
    model.fit([good[:3], good[3:]])
    assert model.fit_rows is not None
    kept, _ = leave_one_out_scores(model)  # from the fit's own features, no images needed
    assert model.fit_rows is None  # used once, then dropped
    again, _ = leave_one_out_scores(model, [good[:5], good[5:]])
    assert torch.allclose(kept, again, rtol=1e-2)  # the kept features are fp16
    with pytest.raises(ValueError, match="pass the training images"):
        leave_one_out_scores(model)


def test_leave_one_out_scores_exceed_in_sample_scores(fitted: PatchCore, good: torch.Tensor) -> None:
    in_sample = fitted.predict(good).score
    fitted.fit_rows = None  # score by a second pass over the images
    loo, maps = leave_one_out_scores(fitted, [good[:5], good[5:]])
    assert loo.shape == (8,) and maps.shape == (8, 64, 64)
    _, few = leave_one_out_scores(fitted, [good[:5], good[5:]], max_maps=6)
    assert few.shape == (6, 64, 64) and torch.allclose(few, maps[:6])
    assert (loo >= in_sample - 1e-4).all()
    assert (loo > in_sample + 1e-3).sum() >= 6  # own rows removed: most images lose their exact match
    # Same as excluding by hand, image by image.
    with torch.no_grad():
        one, _ = score_excluding(fitted, fitted.embed(good[6:7]), torch.tensor([6]))
    assert torch.allclose(one, loo[6:7], atol=1e-5)


def test_bank_source_survives_save_and_load_and_old_files_still_load(fitted: PatchCore, tmp_path) -> None:
    save_patchcore(fitted, tmp_path / "m")
    loaded, _ = load_patchcore(tmp_path / "m")
    assert torch.equal(loaded.bank_source, fitted.bank_source)
    # A model saved before this buffer existed: its tensor file has no bank_source.
    tensors = load_file(str(tmp_path / "m" / TENSOR_FILE))
    del tensors["bank_source"]
    save_file(tensors, str(tmp_path / "m" / TENSOR_FILE))
    doc = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    doc["memory_bank_sha256"] = file_sha256(tmp_path / "m" / TENSOR_FILE)
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(doc))
    reloaded, _ = load_patchcore(tmp_path / "m")
    assert reloaded.bank_source.numel() == 0
    with pytest.raises(RuntimeError, match="which image"):
        score_excluding(reloaded, reloaded.embed(torch.rand(1, 3, 64, 64)), torch.tensor([0]))


def test_state_from_the_images_again_matches_the_fit_s_kept_features(good: torch.Tensor) -> None:
    """A fit that keeps no features (own-aspect frames, a chunked fit) builds the same calibration
    state from its images again: scores, bounds and kept patches that re-score to themselves."""
    from models.patchcore.loo_state import rescore, state_from_batches, state_from_fit

    model = PatchCore(_config())
    model.fit([good[:3], good[3:]])
    again = state_from_batches(model, [good[:5], good[5:]])  # another batching, the same order
    kept = state_from_fit(model)
    assert again is not None and kept is not None
    scores, maps, state = again
    torch.testing.assert_close(scores, kept[0], rtol=5e-3, atol=1e-4)  # fp16 rows in the fit's
    torch.testing.assert_close(state.bound, kept[2].bound, rtol=5e-3, atol=1e-4)
    assert torch.equal(state.ids, torch.arange(8)) and state.rows.shape == kept[2].rows.shape
    assert maps.shape == (8, 64, 64)
    re, certified = rescore(model, state)
    assert bool(certified.all())
    torch.testing.assert_close(re, scores, rtol=5e-3, atol=1e-4)
    chunked = PatchCore(_config(coreset_chunk_rows=100))
    chunked.fit([good[i : i + 1] for i in range(8)])
    assert chunked.fit_rows is None and state_from_batches(chunked, [good]) is not None
