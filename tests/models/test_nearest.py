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


def _dense(q: torch.Tensor, bank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The search differentiated through the whole (queries x bank) product: what autograd did before."""
    d2 = torch.addmm((bank * bank).sum(1).unsqueeze(0), q, bank.T, alpha=-2.0) + (q * q).sum(1, keepdim=True)
    val, idx = d2.topk(k, dim=1, largest=False)
    return val.clamp_min(1e-12).sqrt(), idx


@pytest.mark.parametrize("k", [1, 3])
def test_the_gradient_through_the_chosen_rows_equals_the_whole_products(k: int) -> None:
    g = torch.Generator().manual_seed(1)
    bank, base = torch.randn(500, 32, generator=g), torch.randn(200, 32, generator=g)
    weights = torch.randn(200, k, generator=g)
    q_ref, q_new = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    ref, ref_idx = _dense(q_ref, bank, k)
    new, new_idx = nearest_neighbours(q_new, bank, k=k, chunk=64)
    assert torch.equal(new.detach(), ref.detach()) and torch.equal(new_idx, ref_idx)  # values untouched
    (ref * weights).sum().backward()
    (new * weights).sum().backward()
    assert torch.allclose(q_new.grad, q_ref.grad, atol=1e-5)


def test_the_search_builds_no_graph_when_nothing_needs_a_gradient() -> None:
    g = torch.Generator().manual_seed(2)
    q, bank = torch.randn(50, 8, generator=g), torch.randn(40, 8, generator=g)
    d, _ = nearest_neighbours(q, bank)
    assert not d.requires_grad
    with torch.no_grad():
        d, _ = nearest_neighbours(q.requires_grad_(True), bank)
    assert not d.requires_grad


def test_the_backward_pass_skips_the_whole_product() -> None:
    """Grad-CAM's backward must not multiply a (queries x bank) gradient by the bank (bench_grad_search)."""
    g = torch.Generator().manual_seed(3)
    q, bank = torch.randn(50, 8, generator=g).requires_grad_(True), torch.randn(400, 8, generator=g)
    d, _ = nearest_neighbours(q, bank)
    seen, todo = set(), [d.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        todo.extend(f for f, _ in fn.next_functions)
    names = {type(fn).__name__ for fn in seen}
    assert "AddmmBackward0" not in names and "MmBackward0" not in names, names
