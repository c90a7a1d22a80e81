"""Leave-one-out calibration on a seeded sample of a large training set: the same scores the
whole set's leave-one-out gives those images, on both fit paths, and an update can use them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from inspector.cli import main
from inspector.training import calibration_sample, item_batches, train
from models.patchcore import load_patchcore
from models.patchcore.leave_one_out import leave_one_out_scores
from models.patchcore.loo_state import STATE_FILE, CalibrationState


def test_the_sample_is_all_images_up_to_the_cap_then_seeded_and_ascending() -> None:
    assert calibration_sample(10, 10, 0) is None
    a, b = calibration_sample(50, 12, 3), calibration_sample(50, 12, 3)
    assert a is not None and b is not None and torch.equal(a, b)
    assert a.numel() == 12 and torch.equal(a, a.sort().values) and a.unique().numel() == 12
    assert int(a.min()) >= 0 and int(a.max()) < 50
    other = calibration_sample(50, 12, 4)
    assert other is not None and not torch.equal(a, other)


@pytest.mark.parametrize("chunked", [False, True], ids=["one-search fit", "chunked fit"])
def test_a_sampled_calibration_scores_those_images_as_the_full_one_does(
    synthetic_pills, tiny_config, tmp_path: Path, chunked: bool
) -> None:
    root, manifest, _ = synthetic_pills
    good = [it for it in manifest.split("train") if it.label == "normal"]
    # A small chunk forces the chunked fit, which keeps no features: calibration reads the images again.
    config = replace(tiny_config, coreset_chunk_rows=64) if chunked else tiny_config
    out = tmp_path / "m"
    res = train(manifest, root, out, config=config, device="cpu", loo_max_images=6)
    meta = json.loads((out / "model.json").read_text())["metadata"]
    assert res.n_calibration == meta["n_calibration_images"] == 6 and meta["n_train_images"] == 16
    assert meta["calibration_sample"] == {"images": 6, "of": 16, "seed": config.seed}
    assert meta["thresholds"]["frr"]["n_good"] == 6
    sample = calibration_sample(16, 6, config.seed)
    assert sample is not None
    state = CalibrationState.load(str(out / STATE_FILE))
    assert torch.equal(state.ids, sample)  # each kept state names the image its rows came from
    model, _ = load_patchcore(out)
    full, _ = leave_one_out_scores(model, item_batches(good, root, model.config, 16))
    got = np.array(meta["calibration_scores"])
    assert np.allclose(got, full.numpy()[sample.numpy()], rtol=1e-2)
    assert np.allclose(state.scores.numpy(), got)
    names = {good[i].path for i in sample.tolist()}
    assert {p for p, _ in meta["highest_good_scores"]} <= names


def test_train_says_when_the_threshold_comes_from_a_sample(synthetic_pills, tmp_path: Path, monkeypatch) -> None:
    import inspector.training as training

    monkeypatch.setattr(training, "LOO_MAX_IMAGES", 8)  # the CLI trains with the module's cap
    root, _, path = synthetic_pills
    args = ["train", "--manifest", str(path), "--root", str(root), "--out", str(tmp_path / "m")]
    args += ["--input-size", "64", "--coreset-ratio", "0.25", "--layers", "blocks.1,blocks.2", "--no-search"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "8 calibration images, a seeded random sample of the 16 good ones" in res.output


def test_an_update_recalibrates_from_a_sampled_state(synthetic_pills, tiny_config, tmp_path: Path) -> None:
    from inspector.model_update import bank_statistics, recalibrated
    from models.patchcore.incremental import add_images

    root, manifest, _ = synthetic_pills
    good = [it for it in manifest.split("train") if it.label == "normal"]
    out = tmp_path / "m"
    train(manifest, root, out, config=tiny_config, device="cpu", loo_max_images=6)
    model, meta = load_patchcore(out)
    state = CalibrationState.load(str(out / STATE_FILE))
    extra = next(iter(item_batches(good[:3], root, model.config, 16)))
    added = add_images(model, [extra], bank_statistics(model, meta))
    rec = recalibrated(model, state, meta["thresholds"], added, None)
    assert rec.state is not None
    assert rec.state.ids.numel() == 6 + 3 and torch.equal(rec.state.ids[:6], state.ids)
    assert rec.meta["recalibration"]["images"] == 9


def test_the_engineer_view_shows_what_the_threshold_rests_on(synthetic_pills, tiny_config, tmp_path: Path) -> None:
    from inspector.app_logic import settings_report

    root, manifest, _ = synthetic_pills
    out = tmp_path / "m"
    train(manifest, root, out, config=tiny_config, device="cpu", loo_max_images=6)
    meta = json.loads((out / "model.json").read_text())["metadata"]
    flat = " ".join(settings_report(out).split())  # lines are wrapped to the view's width
    decision = meta["thresholds"]["decision"]
    assert f"threshold {decision:.4f}" in flat
    assert "6 calibration images, a seeded random sample of the 16 good ones" in flat
    assert "false-reject rate" in flat and "from 6 good images" in flat
    assert "least typical good images: pill/good/" in flat
    assert "warning: only 6 good images: 149 are needed" in flat
