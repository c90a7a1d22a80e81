import json
from pathlib import Path

import pytest
import torch

from models.patchcore import ModelFileError, PatchCore, PatchCoreConfig, load_patchcore, save_patchcore


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PatchCore]:
    cfg = PatchCoreConfig(layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.5, pretrained=False)
    model = PatchCore(cfg)
    model.fit([torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))])
    d = tmp_path_factory.mktemp("m") / "model"
    save_patchcore(model, d, {"thresholds": {"decision": 1.0}})
    return d, model


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_round_trip_scores_identically_and_has_no_pickle(saved) -> None:
    d, model = saved
    loaded, meta = load_patchcore(d)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded.predict(x).score, model.predict(x).score)
    assert meta == {"thresholds": {"decision": 1.0}}
    assert sorted(p.name for p in d.iterdir()) == ["memory_bank.safetensors", "model.json"]


def test_missing_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_patchcore(tmp_path / "nothing")
    with pytest.raises(ModelFileError, match="no model.json"):
        load_patchcore(tmp_path)


def test_truncated_bank_is_refused(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path / "t")
    f = d / "memory_bank.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="sha256"):
        load_patchcore(d)


def test_corrupt_json_and_foreign_json(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path / "c")
    (d / "model.json").write_text('{"format": "inspector-patch')
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_patchcore(d)
    (d / "model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelFileError, match="not an inspector PatchCore model"):
        load_patchcore(d)


def test_model_for_another_backbone_is_refused(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path / "b")
    doc = json.loads((d / "model.json").read_text())
    doc["config"]["seed"] = 7  # other random weights than the bank was built with
    (d / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="other 'efficientnet_lite0' weights"):
        load_patchcore(d)
    doc["config"]["backbone"] = "resnet18"
    doc["config"]["pretrained"] = True
    (d / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="needs backbone 'resnet18'"):
        load_patchcore(d)


def test_standardized_model_round_trips_its_channel_statistics(tmp_path: Path) -> None:
    cfg = PatchCoreConfig(layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.5, pretrained=False,
                          standardize=True)
    model = PatchCore(cfg)
    model.fit([torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))])
    assert model.channel_mean.numel() == model.memory_bank.shape[1]
    save_patchcore(model, tmp_path / "s")
    loaded, _ = load_patchcore(tmp_path / "s")
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded.predict(x).score, model.predict(x).score)
