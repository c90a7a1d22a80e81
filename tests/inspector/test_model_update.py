"""An incremental update recalibrates its thresholds by the full train's leave-one-out rule."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from inspector.calibration import calibrate_good_only
from inspector.manifest import Manifest
from inspector.model_update import update_model
from inspector.training import train
from models.patchcore.loo_state import STATE_FILE


def _meta(model_dir: Path) -> dict:
    return json.loads((model_dir / "model.json").read_text())["metadata"]


def test_update_recalibrates_with_a_new_frr_statement_and_chains(synthetic_pills, tiny_config, tmp_path: Path) -> None:
    root, manifest, _ = synthetic_pills
    torch.manual_seed(0)
    base = tmp_path / "v1"
    train(Manifest("pill-train", manifest.split("train")), root, base, config=tiny_config, device="cpu")
    assert (base / STATE_FILE).is_file()
    good = [it for it in manifest.split("test") if not it.is_anomalous]
    v2, v3 = tmp_path / "v2", tmp_path / "v3"
    update_model(base, v2, root, add=Manifest("g1", good[:3]), device="cpu")
    meta = _meta(v2)
    assert meta["thresholds_from"].startswith("recalibrated")
    scores = np.array(meta["calibration_scores"])
    assert scores.size == 16 + 3 == meta["thresholds"]["frr"]["n_good"]
    # the rule is training's own: the stored decision is calibrate_good_only on the stored scores
    want = calibrate_good_only(scores, None, meta["thresholds"]["target_frr"])
    assert meta["thresholds"]["decision"] == want.decision and meta["thresholds"]["frr"] == want.frr
    rec = meta["recalibration"]
    assert rec["images"] == 19 and rec["rescored_exact"] + rec["uncertified"] == 19 and rec["rescored_exact"] >= 3
    # a second update starts from the first one's kept patches
    update_model(v2, v3, root, add=Manifest("g2", good[3:5]), device="cpu")
    assert _meta(v3)["thresholds"]["frr"]["n_good"] == 21 and (v3 / STATE_FILE).is_file()


def test_model_without_kept_patches_keeps_its_thresholds_and_says_so(trained_tiny, synthetic_pills, tmp_path) -> None:
    root, manifest, _ = synthetic_pills
    good = [it for it in manifest.split("test") if not it.is_anomalous][:2]
    out = tmp_path / "v2"
    update_model(trained_tiny, out, root, add=Manifest("g", good), device="cpu")
    meta = _meta(out)
    assert meta["thresholds"] == _meta(trained_tiny)["thresholds"]
    assert "not recalibrated" in meta["thresholds_from"]
    assert not (out / STATE_FILE).exists()


def test_update_keeps_the_fine_map_bank_and_says_so(synthetic_pills, tiny_config, tmp_path: Path) -> None:
    """``train --update`` changes the score bank only: a blended map's fine bank is the last full
    fit's, unchanged, and the CLI says so rather than implying it was refreshed."""
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from inspector.cli import main

    root, manifest, _ = synthetic_pills
    cfg = replace(tiny_config, map_layers="auto", map_blend="mean")
    base = tmp_path / "v1"
    train(Manifest("pill-train", manifest.split("train")), root, base, config=cfg, device="cpu")
    add = tmp_path / "add.json"
    Manifest("g", [it for it in manifest.split("test") if not it.is_anomalous][:2]).save(add)
    out = tmp_path / "v2"
    args = ["train", "--update", str(base), "--add", str(add), "--root", str(root), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "fine bank is kept from the last full fit" in result.output
    before, after = load_file(base / "memory_bank.safetensors"), load_file(out / "memory_bank.safetensors")
    assert torch.equal(before["map_bank"], after["map_bank"])
    assert not torch.equal(before["memory_bank"], after["memory_bank"])  # the score bank did change
    assert json.loads((out / "model.json").read_text())["config"]["map_blend"] == "mean"


def test_an_update_that_takes_the_model_over_its_budget_says_so(synthetic_pills, tiny_config, tmp_path, monkeypatch):
    """A growing bank costs time per frame; a model chosen under a budget must not leave it silently."""
    from click.testing import CliRunner

    import inspector.candidate_scoring as cs
    from inspector.cli import main

    root, manifest, _ = synthetic_pills
    base = tmp_path / "v1"
    train(Manifest("pill-train", manifest.split("train")), root, base, config=tiny_config, device="cpu")
    add = tmp_path / "add.json"
    Manifest("g", [it for it in manifest.split("test") if not it.is_anomalous][:2]).save(add)
    args = ["train", "--update", str(base), "--add", str(add), "--root", str(root), "--device", "cpu"]
    rows: list[int] = []

    def cost(model, probe, budget_ms):  # type: ignore[no-untyped-def]
        rows.append(int(model.memory_bank.shape[0]))
        return 40.0

    monkeypatch.setattr(cs, "measure_near", cost)
    # Settings given, not searched: no budget to hold, nothing measured.
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "v2")])
    assert result.exit_code == 0, result.output
    assert not rows and "over the" not in result.output
    # Chosen under a 33 ms budget: measured on the updated bank, and over it.
    doc = json.loads((base / "model.json").read_text())
    doc["metadata"]["settings_search"] = {"budget_ms": 33.0, "allow_over_budget": False}
    (base / "model.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "v3")])
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file

    assert rows == [load_file(tmp_path / "v3" / "memory_bank.safetensors")["memory_bank"].shape[0]]
    assert "40.0 ms per frame with Grad-CAM" in result.output
    assert "over the 33 ms budget its settings were chosen under" in result.output
    # Within the budget: the cost is stated, no warning.
    monkeypatch.setattr(cs, "measure_near", lambda model, probe, budget_ms: 20.0)
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "v4")])
    assert result.exit_code == 0, result.output
    assert "20.0 ms per frame" in result.output and "over the" not in result.output
