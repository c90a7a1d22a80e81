"""Training calibrates leave-one-out by default, states its false-reject rate, records the domain;
evaluation-only manifests; eval warns on a manifest of another product."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from inspector.cli import main
from inspector.domain import manifest_warnings
from inspector.errors import ConfigError
from inspector.manifest import build_manifest
from inspector.synthetic import write_dataset
from inspector.training import item_batches, train
from models.patchcore import load_patchcore
from models.patchcore.leave_one_out import leave_one_out_scores


def _meta(model_dir: Path) -> dict:
    return json.loads((model_dir / "model.json").read_text())["metadata"]


@pytest.fixture(scope="module")
def loo_model(tmp_path_factory: pytest.TempPathFactory, synthetic_pills, tiny_config) -> Path:
    """The tiny model trained by default: leave-one-out calibration."""
    root, manifest, _ = synthetic_pills
    out = tmp_path_factory.mktemp("loo") / "model"
    train(manifest, root, out, config=tiny_config, device="cpu")
    return out


def test_every_good_image_builds_the_bank_and_calibrates(loo_model, synthetic_pills) -> None:
    root, manifest, _ = synthetic_pills
    meta = _meta(loo_model)
    good = [it for it in manifest.split("train") if it.label == "normal"]
    assert meta["calibration"] == "leave-one-out"
    assert meta["n_train_images"] == meta["n_calibration_images"] == len(good) == 16
    stated = meta["thresholds"]["frr"]
    assert stated["n_good"] == 16 and stated["upper"] == pytest.approx(1 - 0.05 ** (1 / 16), rel=1e-6)
    assert meta["calibration_warnings"] and "149 are needed" in meta["calibration_warnings"][0]  # 2% target
    model, _ = load_patchcore(loo_model)
    assert int(model.bank_source.max()) == 15  # every image's rows are traceable
    loo = np.array(meta["calibration_scores"])
    again, _ = leave_one_out_scores(model, item_batches(good, root, model.config.input_size, 16))
    assert np.allclose(loo, again.numpy(), rtol=1e-2)  # training used its kept fp16 features
    # Scored with its own rows in the bank, a training image looks better than it is.
    with torch.no_grad():
        in_sample = torch.cat([model.predict(b).score for b in item_batches(good, root, 64, 16)]).numpy()
    assert (loo >= in_sample - 1e-4).all() and loo.mean() > in_sample.mean() * 1.05
    assert meta["domain"]["channels"] == [3] and meta["domain"]["width"] == [96, 96]


def test_train_prints_the_statement_the_warning_and_the_least_typical_images(synthetic_pills, tmp_path: Path) -> None:
    root, manifest, path = synthetic_pills
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--manifest",
            str(path),
            "--root",
            str(root),
            "--out",
            str(tmp_path / "m"),
            "--input-size",
            "64",
            "--coreset-ratio",
            "0.25",
            "--layers",
            "blocks.1,blocks.2",
            "--no-search",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "false-reject rate 5.9% expected, at most 17.1% at 95% confidence, from 16 good images" in res.output
    assert "warning: only 16 good images: 149 are needed" in res.output
    assert "least typical good images: pill/good/" in res.output


def test_holdout_calibration_is_still_available(synthetic_pills, tiny_config, tmp_path: Path) -> None:
    root, manifest, _ = synthetic_pills
    res = train(
        manifest, root, tmp_path / "m", config=tiny_config, device="cpu", calibration="holdout", holdout_share=0.25
    )
    assert (res.n_train, res.n_calibration) == (12, 4) and res.frr is not None and res.frr.n_good == 4
    with pytest.raises(ConfigError, match="unknown calibration"):
        train(manifest, root, tmp_path / "x", config=tiny_config, device="cpu", calibration="guess")


def test_train_count_zero_makes_an_evaluation_only_manifest(synthetic_pills, tmp_path: Path) -> None:
    root, _, _ = synthetic_pills
    m = build_manifest(root / "pill", "folders", normal="good", train_count=0)
    assert m.split("train") == [] and len(m.split("test")) == len(m.items) > 0
    out = tmp_path / "eval-only.json"
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "data",
            "manifest",
            str(root / "pill"),
            "--layout",
            "folders",
            "--normal",
            "good",
            "--train-count",
            "0",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "(0 train, 0 val," in res.output
    res = runner.invoke(
        main,
        [
            "train",
            "--manifest",
            str(out),
            "--root",
            str(root / "pill"),
            "--out",
            str(tmp_path / "m"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code != 0 and "no normal images in the train split" in res.output


def test_mvtec_layout_train_count(tmp_path: Path) -> None:
    from PIL import Image

    for sub, n in (("train/good", 4), ("test/good", 2), ("test/scratch", 2)):
        (tmp_path / sub).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((40, 40, 3), 10 * i + n, np.uint8)).save(tmp_path / sub / f"{i:03d}.png")
    assert len(build_manifest(tmp_path, "mvtec").split("train")) == 4
    m = build_manifest(tmp_path, "mvtec", train_count=0)
    assert m.split("train") == [] and len(m.split("test")) == 4


def test_eval_warns_when_the_manifest_is_another_product(loo_model, synthetic_pills, tmp_path: Path) -> None:
    root, manifest, _ = synthetic_pills
    meta = _meta(loo_model)
    assert manifest_warnings(meta, manifest, root) == []  # the model's own manifest
    surface = write_dataset(tmp_path, "surface", n_train=2, n_test_good=4, n_test_defect=2, size=96)
    warnings = manifest_warnings(meta, surface, tmp_path)
    assert any("trained on manifest 'synthetic-pill'" in w for w in warnings)
    assert any("do not look like the model's training images" in w for w in warnings)
    path = tmp_path / "surface.json"
    surface.save(path)
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--model",
            str(loo_model),
            "--manifest",
            str(path),
            "--root",
            str(tmp_path),
            "--json",
            str(tmp_path / "e.json"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "warning: the model was trained on manifest 'synthetic-pill'" in res.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["warnings"] == warnings and report["stated_frr"]["n_good"] == 16


def test_a_fine_score_model_is_calibrated_on_its_own_score(synthetic_pills, tiny_config, tmp_path: Path) -> None:
    """With the opt-in fine image score, the thresholds come from the combined leave-one-out scores."""
    from dataclasses import replace

    from models.patchcore.leave_one_out import score_excluding
    from models.patchcore.loo_state import STATE_FILE

    root, manifest, _ = synthetic_pills
    out = tmp_path / "fine"
    train(manifest, root, out, config=replace(tiny_config, fine_score="max"), device="cpu")
    meta = _meta(out)
    assert not (out / STATE_FILE).exists()  # its kept patches would be the coarse bank's only
    model, _ = load_patchcore(out)
    assert model.config.fine_score == "max" and model.score_scale.shape == (2,)
    good = [it for it in manifest.split("train") if it.label == "normal"]
    loo = np.array(meta["calibration_scores"])
    again, _ = leave_one_out_scores(model, item_batches(good, root, model.config.input_size, 16))
    assert np.allclose(loo, again.numpy(), rtol=1e-2)  # the saved model recalibrates alike
    coarse = []
    with torch.no_grad():
        for i, b in enumerate(item_batches(good, root, model.config.input_size, 16)):
            coarse.append(score_excluding(model, model.embed(b), torch.arange(16 * i, 16 * i + b.shape[0]))[0])
    coarse_loo = torch.cat(coarse).numpy()
    assert (loo >= coarse_loo * (1 - 1e-2)).all() and (loo > coarse_loo * 1.01).any()
