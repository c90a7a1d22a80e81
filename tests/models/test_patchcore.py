import copy
from dataclasses import replace

import pytest
import torch

from models.patchcore import PatchCore, PatchCoreConfig
from models.patchcore.anomaly_map import anomaly_map, upsample_and_smooth


@pytest.fixture(scope="module")
def fitted() -> PatchCore:
    cfg = PatchCoreConfig(
        layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.5, pretrained=False, feature_stride=8
    )
    model = PatchCore(cfg)
    g = torch.Generator().manual_seed(0)
    good = 0.5 + 0.05 * torch.randn(8, 3, 64, 64, generator=g)
    model.fit([good[:4], good[4:]])
    return model


def reference_image_score(model: PatchCore, x: torch.Tensor) -> torch.Tensor:
    """anomalib's compute_anomaly_score, written plainly with cdist over the whole bank."""
    emb = model.embed(x)
    b, c, h, w = emb.shape
    flat = emb.permute(0, 2, 3, 1).reshape(b, h * w, c)
    out = []
    for i in range(b):
        d = torch.cdist(flat[i], model.memory_bank)
        patch, nn_idx = d.min(1)
        top = int(patch.argmax())
        nn_sample = model.memory_bank[nn_idx[top]]
        k = min(model.config.num_neighbours, model.memory_bank.shape[0])
        support = torch.cdist(nn_sample[None], model.memory_bank).topk(k, largest=False).indices[0]
        dist = torch.cdist(flat[i, top][None], model.memory_bank[support])[0]
        out.append((1 - torch.softmax(dist, 0)[0]) * patch[top])
    return torch.stack(out)


def test_scores_match_the_reference_formula(fitted: PatchCore) -> None:
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    paper = copy.copy(fitted)  # shares the bank; only the score setting differs
    paper.config = replace(fitted.config, score_topk=1)
    with torch.no_grad():
        ref = reference_image_score(paper, x)
    pred = paper.predict(x)
    assert torch.allclose(pred.score, ref, rtol=1e-4, atol=1e-4)
    assert pred.anomaly_map.shape == (3, 64, 64)
    assert pred.patch_scores.shape == (3, 8, 8)


@pytest.mark.parametrize("k", [2, 5])
def test_topk_score_is_the_mean_of_the_k_largest_patch_distances(fitted: PatchCore, k: int) -> None:
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    model = copy.copy(fitted)
    model.config = replace(fitted.config, score_topk=k)
    with torch.no_grad():
        emb = model.embed(x)
        flat = emb.permute(0, 2, 3, 1).reshape(3, -1, emb.shape[1])
        ref = torch.stack([torch.cdist(f, model.memory_bank).min(1).values.topk(k).values.mean() for f in flat])
        exact, _ = model.score_embedding(emb, exact=True)
    assert torch.allclose(model.predict(x).score, ref, rtol=1e-4, atol=1e-4)
    assert torch.allclose(exact, ref, rtol=1e-4, atol=1e-4)
    # not the paper's score under another name: the mean of k is below the largest
    assert (ref < torch.stack([torch.cdist(f, model.memory_bank).min(1).values.max() for f in flat])).all()


def test_models_saved_before_the_setting_keep_the_papers_score() -> None:
    d = PatchCoreConfig(score_topk=3).to_json()
    assert d["score_topk"] == 3
    assert PatchCoreConfig.from_json(d).score_topk == 3
    del d["score_topk"]
    assert PatchCoreConfig.from_json(d).score_topk == 1


def test_batched_equals_one_by_one(fitted: PatchCore) -> None:
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    batch = fitted.predict(x).score
    single = torch.cat([fitted.predict(x[i : i + 1]).score for i in range(4)])
    assert torch.allclose(batch, single, atol=1e-5)


def test_odd_inputs_score_higher_than_good_ones(fitted: PatchCore) -> None:
    g = torch.Generator().manual_seed(3)
    good = 0.5 + 0.05 * torch.randn(2, 3, 64, 64, generator=g)
    bad = good.clone()
    bad[:, :, 20:36, 20:36] = 0.0
    assert (fitted.predict(bad).score > fitted.predict(good).score).all()
    amap = fitted.predict(bad).anomaly_map[0]
    assert amap[28, 28] > amap[2, 2]  # the map peaks where the defect is


def test_score_path_keeps_gradients(fitted: PatchCore) -> None:
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    fitted.score(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unfitted_model_refuses_to_score() -> None:
    model = PatchCore(PatchCoreConfig(input_size=64, pretrained=False))
    with pytest.raises(RuntimeError, match="no memory bank"):
        model.predict(torch.rand(1, 3, 64, 64))


def test_training_mode_never_changes_batchnorm(fitted: PatchCore) -> None:
    fitted.train()
    assert not fitted.training and not fitted.extractor.body.training


@pytest.mark.parametrize(
    ("h", "w", "size", "sigma"), [(8, 8, (64, 64), 4.0), (14, 9, (112, 72), 2.5), (8, 8, (64, 64), 0.0)]
)
def test_anomaly_map_operator_equals_upsample_then_blur(h: int, w: int, size: tuple[int, int], sigma: float) -> None:
    patch = torch.rand(2, h, w, generator=torch.Generator().manual_seed(h * w))
    fast = anomaly_map(patch, size, sigma)
    assert fast.shape == (2, *size)
    assert torch.allclose(fast, upsample_and_smooth(patch, size, sigma), atol=1e-5)


def _good(n: int, seed: int) -> torch.Tensor:
    return 0.5 + 0.05 * torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_chunked_coreset_keeps_the_ratio_and_the_ranking() -> None:
    base = dict(layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.25, pretrained=False, feature_stride=8)
    whole = PatchCore(PatchCoreConfig(**base, coreset_chunk_rows=0))
    chunked = PatchCore(PatchCoreConfig(**base, coreset_chunk_rows=128))  # 64 patches per image: many chunks
    train = [_good(4, s) for s in range(6)]  # 24 images, 1536 patches
    searches: dict[str, int] = {"whole": 0, "chunked": 0}

    def counter(key: str):
        def progress(stage: str, done: int, total: int) -> None:
            searches[key] += stage == "coreset" and done == 1

        return progress

    whole.fit(train, progress=counter("whole"))
    chunked.fit(train, progress=counter("chunked"))
    assert searches["whole"] == 1 and searches["chunked"] >= 6  # one greedy search per chunk
    assert abs(chunked.memory_bank.shape[0] - whole.memory_bank.shape[0]) <= 12  # per-chunk rounding only
    # Standardisation uses every patch in both, so the two banks live in one feature space.
    assert torch.allclose(chunked.channel_mean, whole.channel_mean, atol=1e-4)
    bad = _good(6, 99)
    bad[:3, :, 20:36, 20:36] = 0.0
    s_whole, s_chunked = whole.predict(bad).score, chunked.predict(bad).score
    assert s_chunked[:3].min() > s_chunked[3:].max()
    assert torch.allclose(s_chunked, s_whole, rtol=0.25)
