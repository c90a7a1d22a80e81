"""Non-square inputs: a model keeps its frames' aspect, saves it, and loads it back."""

from __future__ import annotations

import torch

from models.backbones import build_feature_extractor
from models.patchcore import PatchCore, PatchCoreConfig, load_patchcore, save_patchcore


def _config(**kw: object) -> PatchCoreConfig:
    base = {"layers": ("blocks.1", "blocks.2"), "input_size": 96, "coreset_ratio": 0.5, "pretrained": False}
    return PatchCoreConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_non_square_model_predicts_maps_of_its_input_shape(tmp_path) -> None:
    cfg = _config(input_width=48)
    assert cfg.input_hw == (96, 48) and _config().input_hw == (96, 96)
    model = PatchCore(cfg)
    torch.manual_seed(0)
    model.fit([torch.rand(4, 3, 96, 48)])
    pred = model.predict(torch.rand(2, 3, 96, 48))
    assert pred.anomaly_map.shape == (2, 96, 48) and pred.patch_scores.shape == (2, 12, 6)
    save_patchcore(model, tmp_path / "m")
    loaded, _ = load_patchcore(tmp_path / "m")
    assert loaded.config.input_hw == (96, 48)
    x = torch.rand(1, 3, 96, 48)
    assert torch.allclose(loaded.predict(x).score, model.predict(x).score, atol=1e-5)


def test_square_configs_keep_their_json() -> None:
    assert "input_width" not in _config().to_json()
    assert PatchCoreConfig.from_json(_config(input_width=48).to_json()).input_width == 48


def test_extractor_stops_at_the_deepest_requested_stage() -> None:
    ext, _ = build_feature_extractor("efficientnet_lite0", ("blocks.1", "blocks.2", "blocks.4"), pretrained=False)
    full = ext(torch.rand(1, 3, 64, 64))
    ext.layers = ["blocks.1"]
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda *_a, n=n: calls.append(n)) for n, m in ext._stages]
    try:
        out = ext(torch.rand(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    assert set(full) == {"blocks.1", "blocks.2", "blocks.4"} and set(out) == {"blocks.1"}
    assert calls == ["stem", "blocks.0", "blocks.1"]


def test_refit_does_not_reuse_old_channel_statistics() -> None:
    model = PatchCore(_config())
    torch.manual_seed(0)
    data = torch.rand(4, 3, 96, 96)
    model.fit([data])
    first = model.memory_bank.clone()
    model.fit([data])
    assert torch.allclose(first, model.memory_bank, atol=1e-5)
