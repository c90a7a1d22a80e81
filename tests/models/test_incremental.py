"""Incremental memory-bank updates against a full refit, on a tiny random backbone."""

import copy

import pytest
import torch

from models.components.nearest import nearest_neighbours, squared_norms
from models.patchcore import PatchCore, PatchCoreConfig
from models.patchcore.incremental import PatchStatistics, add_images, full_refit_rows, remove_images

CFG = dict(layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.25, pretrained=False, feature_stride=8)
PATCHES = 64  # 8 x 8 grid at 64 px, stride 8


def _good(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.5 + 0.05 * torch.randn(n, 3, 64, 64, generator=g)).clamp(0, 1)


def _odd(n: int, seed: int) -> torch.Tensor:
    x = _good(n, seed)
    x[:, :, 20:36, 20:36] = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed + 1))
    return x


@pytest.fixture(scope="module")
def base() -> tuple[PatchCore, PatchStatistics]:
    model = PatchCore(PatchCoreConfig(**CFG))
    model.fit([_good(4, 0), _good(4, 1)])
    return model, PatchStatistics.of_model(model, 8 * PATCHES)


def _full_knn(bank: torch.Tensor, k: int) -> torch.Tensor:
    return nearest_neighbours(bank, bank, squared_norms(bank), k=min(k, bank.shape[0]))[1]


def test_add_keeps_the_full_refit_bank_size_and_an_exact_neighbour_table(base) -> None:
    model, stats = copy.deepcopy(base[0]), copy.deepcopy(base[1])
    before = model.memory_bank.clone()
    report = add_images(model, [_good(4, 2), _good(4, 3)], stats, restandardize_at=float("inf"))
    full = PatchCore(PatchCoreConfig(**CFG))
    full.fit([_good(4, s) for s in range(4)])
    assert report.bank_rows_after == model.memory_bank.shape[0] == full_refit_rows(model, 16 * PATCHES)
    assert abs(model.memory_bank.shape[0] - full.memory_bank.shape[0]) <= 0.1 * full.memory_bank.shape[0]
    assert torch.equal(model.memory_bank[: before.shape[0]], before)  # old rows untouched (stats frozen)
    assert not report.restandardized
    # the merged neighbour table is what a full search over the new bank gives
    want = _full_knn(model.memory_bank, model.config.num_neighbours)
    d_got = torch.linalg.vector_norm(model.memory_bank.unsqueeze(1) - model.memory_bank[model.bank_neighbours], dim=2)
    d_want = torch.linalg.vector_norm(model.memory_bank.unsqueeze(1) - model.memory_bank[want], dim=2)
    assert torch.allclose(d_got.sort(1).values, d_want.sort(1).values, atol=1e-4)


def test_added_images_score_like_the_full_refit_and_odd_ones_stay_high(base) -> None:
    model, stats = copy.deepcopy(base[0]), copy.deepcopy(base[1])
    add_images(model, [_good(4, 2), _good(4, 3)], stats)
    full = PatchCore(PatchCoreConfig(**CFG))
    full.fit([_good(4, s) for s in range(4)])
    good, odd = _good(6, 50), _odd(6, 60)
    inc_good, inc_odd = model.predict(good).score, model.predict(odd).score
    assert inc_odd.min() > inc_good.max()  # still separates
    full_good = full.predict(good).score
    assert float((inc_good.mean() - full_good.mean()).abs()) < 0.2 * float(full_good.mean())
    # an image that was added is now covered: its score falls to the level of training images
    seen = _good(4, 3)
    assert float(model.predict(seen).score.mean()) < float(base[0].predict(seen).score.mean())


def test_drift_beyond_the_limit_restandardises_exactly(base) -> None:
    model, stats = copy.deepcopy(base[0]), copy.deepcopy(base[1])
    raw_before = model.memory_bank / model.channel_scale + model.channel_mean
    report = add_images(model, [_good(4, 7) * 0.5], stats, restandardize_at=0.0)  # darker parts: stats move
    assert report.restandardized and report.drift > 0
    mean, std = stats.mean_std()
    assert torch.allclose(model.channel_mean, mean) and torch.allclose(model.channel_scale, 1 / std)
    raw_after = model.memory_bank[: raw_before.shape[0]] / model.channel_scale + model.channel_mean
    assert torch.allclose(raw_after, raw_before, atol=1e-3)  # same raw features, new units
    assert torch.equal(model.bank_neighbours, _full_knn(model.memory_bank, model.config.num_neighbours))


def test_remove_drops_exactly_the_rows_of_that_image(base) -> None:
    model, stats = copy.deepcopy(base[0]), copy.deepcopy(base[1])
    add_images(model, [_odd(2, 9)], stats)  # a defective image confirmed as good by mistake
    n_with = model.memory_bank.shape[0]
    odd = _odd(2, 9)
    assert float(model.predict(odd).score.max()) < float(base[0].predict(odd).score.min())
    report = remove_images(model, [odd], stats)
    assert report.rows_removed > 0 and model.memory_bank.shape[0] == n_with - report.rows_removed
    assert stats.n == 8 * PATCHES and report.images_matched == 2
    # the odd image scores as high as before it was added
    assert torch.allclose(model.predict(odd).score, base[0].predict(odd).score, rtol=1e-3)
    assert torch.equal(model.bank_neighbours, _full_knn(model.memory_bank, model.config.num_neighbours))


def test_remove_of_an_unseen_image_changes_nothing(base) -> None:
    model, stats = copy.deepcopy(base[0]), copy.deepcopy(base[1])
    report = remove_images(model, [_odd(1, 99)], stats)
    assert report.rows_removed == 0 and report.images_matched == 0 and stats.n == base[1].n
    assert torch.equal(model.memory_bank, base[0].memory_bank)


@pytest.mark.parametrize("search", ["exact", "bf16"])
def test_recalibration_from_kept_patches_equals_leave_one_out_on_whole_images(search: str, monkeypatch) -> None:
    import models.patchcore.incremental as inc

    if search == "bf16":  # the bf16 first search with its error bound, forced on this small bank
        monkeypatch.setattr(inc, "_HALF_MIN_PAIRS", 0)
        monkeypatch.setattr(inc, "half_search_available", lambda *a: True)
    from models.patchcore.incremental import _standardised
    from models.patchcore.leave_one_out import score_excluding
    from models.patchcore.loo_state import CalibrationState, raw_rows, rescore, state_from_fit

    images = [_good(4, 0), _good(4, 1)]
    model = PatchCore(PatchCoreConfig(**CFG))
    model.fit(images)
    fitted = state_from_fit(model)
    assert fitted is not None
    scores, _, state = fitted
    stats = PatchStatistics.of_model(model, 8 * PATCHES)
    new = [_good(4, 2)]
    report = add_images(model, new, stats, restandardize_at=float("inf"))
    old_scores, certified = rescore(model, state)

    # The truth: every patch of every image (fp16-rounded, as fit keeps them), scored without its
    # own rows, against the new bank.
    def loo(batch: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            emb = model.embed(batch)
            rows = _standardised(model, raw_rows(model, emb)).view(emb.shape[0], 8, 8, -1).permute(0, 3, 1, 2)
            return score_excluding(model, rows.contiguous(), ids)

    truth = loo(torch.cat(images + new), torch.arange(12))[0]
    assert bool(certified.any())
    assert torch.allclose(old_scores[certified].float(), truth[:8][certified], rtol=1e-4, atol=1e-5)
    fresh = report.new_images
    assert fresh is not None and fresh.ids.tolist() == [8, 9, 10, 11]
    new_state = CalibrationState(fresh.ids, torch.zeros(4, dtype=torch.float64), fresh.rows, fresh.bound, state.scale)
    new_scores, new_cert = rescore(model, new_state)
    assert bool(new_cert.all())
    assert torch.allclose(new_scores.float(), truth[8:], rtol=1e-4, atol=1e-5)
    # the update's patch distances are the leave-one-out patch scores of the new images
    patch_truth = loo(new[0], torch.arange(8, 12))[1]
    if search == "exact":
        assert torch.allclose(fresh.patch_scores, patch_truth, rtol=1e-4, atol=1e-4)
    else:  # approximate off the top patches, exact on them
        top = fresh.patch_scores.flatten(1).amax(1)
        assert torch.allclose(top, patch_truth.flatten(1).amax(1), rtol=1e-4, atol=1e-4)


def test_kept_patches_come_with_the_same_scores_and_maps_as_leave_one_out_scores() -> None:
    from models.patchcore.leave_one_out import leave_one_out_scores
    from models.patchcore.loo_state import TOP_PATCHES, state_from_fit

    model = PatchCore(PatchCoreConfig(**CFG))
    model.fit([_good(4, 0), _good(4, 1)])
    kept = model.fit_rows
    want_scores, want_maps = leave_one_out_scores(model)
    model.fit_rows = kept
    fitted = state_from_fit(model)
    assert fitted is not None and model.fit_rows is None
    scores, maps, state = fitted
    assert torch.equal(scores.float(), want_scores.float()) and torch.equal(maps, want_maps)
    assert state.rows.shape == (8, TOP_PATCHES, model.memory_bank.shape[1]) and state.ids.tolist() == list(range(8))
