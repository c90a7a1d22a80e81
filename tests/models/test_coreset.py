import torch

from models.components.coreset import greedy_coreset


def reference_greedy(x: torch.Tensor, k: int, first: int) -> list[int]:
    """Textbook k-center greedy with cdist, the behaviour the fast version must reproduce."""
    chosen = [first]
    min_d = torch.cdist(x, x[first : first + 1]).squeeze(1)
    for _ in range(k - 1):
        nxt = int(torch.argmax(min_d))
        chosen.append(nxt)
        min_d = torch.minimum(min_d, torch.cdist(x, x[nxt : nxt + 1]).squeeze(1))
    return chosen


def test_matches_reference_without_projection() -> None:
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(1))
    got = greedy_coreset(x, 40, projection_dim=0, seed=3)
    assert got.tolist() == reference_greedy(x, 40, int(got[0]))


def test_seeded_and_reports_progress() -> None:
    x = torch.randn(400, 200, generator=torch.Generator().manual_seed(2))
    seen: list[tuple[int, int]] = []
    a = greedy_coreset(x, 30, seed=5, progress=lambda i, n: seen.append((i, n)), progress_every=10)
    b = greedy_coreset(x, 30, seed=5)
    assert torch.equal(a, b) and len(set(a.tolist())) == 30
    assert seen[-1] == (30, 30)


def test_covers_outliers_first() -> None:
    x = torch.zeros(200, 8)
    x[:, 0] = torch.linspace(0, 1, 200)
    x[7] = 50.0  # a rare pattern must be kept
    assert 7 in greedy_coreset(x, 3, projection_dim=0, seed=0).tolist()


def test_keeps_all_when_asked_for_more() -> None:
    assert greedy_coreset(torch.randn(5, 3), 10).tolist() == [0, 1, 2, 3, 4]
