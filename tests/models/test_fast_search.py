"""The certified bf16 search gives the exact image scores of the fp32 search, and sound bounds."""

from __future__ import annotations

import pytest
import torch

from models.components.nearest import (
    HALF_SEARCH_MIN_ROWS,
    approximate_nearest,
    half_bank,
    half_search_available,
    nearest_neighbours,
)
from models.patchcore import PatchCore, PatchCoreConfig

needs_bf16 = pytest.mark.skipif(
    not half_search_available(torch.device("cpu"), HALF_SEARCH_MIN_ROWS),
    reason="this CPU has no fast bf16 products, so PatchCore never takes the bf16 path here",
)


def _bank_and_queries(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    bank = torch.randn(HALF_SEARCH_MIN_ROWS + 100, 40, generator=g) * torch.rand(40, generator=g) + 3.0
    queries = bank[torch.randint(0, bank.shape[0], (500,), generator=g)] + 0.3 * torch.randn(500, 40, generator=g)
    return bank, queries


def test_interval_holds_the_exact_distance() -> None:
    bank, queries = _bank_and_queries(0)
    d2, err = approximate_nearest(queries, half_bank(bank))
    exact = nearest_neighbours(queries, bank)[0][:, 0] ** 2
    assert ((d2 - exact).abs() <= err + 1e-3).all()


@needs_bf16
@pytest.mark.parametrize("k", [1, 5])
def test_fast_scores_equal_exact_scores(k: int) -> None:
    bank, queries = _bank_and_queries(1)
    model = PatchCore(PatchCoreConfig(layers=("blocks.1",), input_size=64, pretrained=False, score_topk=k))
    model.set_memory_bank(bank)
    emb = queries.view(5, 10, 10, 40).permute(0, 3, 1, 2)
    with torch.inference_mode():
        fast_s, fast_p = model.score_embedding(emb, exact=False)
        exact_s, exact_p = model.score_embedding(emb, exact=True)
        default_s, _ = model.score_embedding(emb)
    assert torch.allclose(fast_s, exact_s, rtol=1e-5, atol=1e-5)
    assert torch.allclose(default_s, exact_s, rtol=1e-5, atol=1e-5)
    assert ((fast_p - exact_p).abs() <= 0.05 * exact_p + 1e-4).all()


def test_gradients_take_the_exact_path() -> None:
    bank, queries = _bank_and_queries(2)
    model = PatchCore(PatchCoreConfig(layers=("blocks.1",), input_size=64, pretrained=False))
    model.set_memory_bank(bank)
    emb = queries[:100].reshape(1, 10, 10, 40).permute(0, 3, 1, 2).clone().requires_grad_(True)
    score, _ = model.score_embedding(emb)
    score.sum().backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
