import pytest
import torch

from models.components.nearest import nearest_neighbours


@pytest.mark.parametrize("k", [1, 3])
def test_distances_match_cdist(k: int) -> None:
    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(300, 17, generator=g), torch.randn(120, 17, generator=g)
    d, idx = nearest_neighbours(q, bank, k=k, chunk=64)
    ref_d, ref_idx = torch.cdist(q, bank).topk(k, dim=1, largest=False)
    assert torch.allclose(d, ref_d, atol=1e-4)
    assert torch.equal(idx, ref_idx)


def test_gradient_flows_and_is_finite_at_zero_distance() -> None:
    bank = torch.randn(10, 4)
    q = bank[:3].clone().requires_grad_(True)  # exact matches: distance 0
    d, _ = nearest_neighbours(q, bank)
    (d.sum() + nearest_neighbours(q + 1, bank)[0].sum()).backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
