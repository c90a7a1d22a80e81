"""Frames kept at their own aspect (issue 11): every path that feeds the model gives each frame its
own input size, in order, and the paths that need one size say so."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inspector.autoconfig import default_input, select_config, training_keeps_aspect
from inspector.errors import ConfigError
from inspector.manifest import Manifest, build_manifest
from inspector.preprocess import model_batches, model_input_hw, size_groups, to_batch
from inspector.synthetic import make_sample
from models.patchcore import PatchCoreConfig

# Both orientations, up to 2.8:1, as the magnetic tiles come (width, height).
TRAIN_SIZES = [(103, 288), (632, 226), (226, 632), (288, 103), (400, 250), (250, 400), (500, 210), (210, 500)]
TRAIN_SIZES += [(350, 150), (150, 350), (300, 120), (120, 300)]
TEST_SIZES = [(120, 320), (320, 120), (200, 200), (240, 100)]
TINY = PatchCoreConfig(
    layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.25, pretrained=False, keep_aspect=True
)


def _frame(index: int, size: tuple[int, int], defect: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    s = make_sample("surface", index, defect, size=160)
    w, h = size
    img = cv2.resize(s.image, (w, h), interpolation=cv2.INTER_AREA)
    return img, cv2.resize(s.mask, (w, h), interpolation=cv2.INTER_NEAREST)


def test_a_frame_keeps_its_aspect_at_the_input_s_area() -> None:
    cfg = PatchCoreConfig(input_size=112, keep_aspect=True)
    for h, w in [(632, 226), (226, 632), (300, 300), (103, 288)]:
        ih, iw = cfg.frame_input_hw((h, w))
        assert ih % 8 == 0 and iw % 8 == 0
        assert abs(ih * iw / 112**2 - 1) < 0.12  # about the square's pixels
        assert abs(np.log((ih / iw) / (h / w))) < 0.1  # and the frame's own aspect
    assert PatchCoreConfig(input_size=112).frame_input_hw((632, 226)) == (112, 112)  # squashed, as before
    for sliver in [(100000, 1), (1, 100000), (5000, 3)]:  # never more pixels than the input's
        ih, iw = cfg.frame_input_hw(sliver)
        assert min(ih, iw) == 32 and ih * iw <= 112**2 * 1.05
    assert PatchCoreConfig(input_size=112, input_width=48).frame_input_hw((10, 10)) == (112, 48)


def test_size_groups_keep_order_and_split_at_size_changes() -> None:
    cfg = PatchCoreConfig(input_size=64, keep_aspect=True)
    imgs = [np.zeros((h, w, 3), np.uint8) for h, w in [(100, 40), (100, 40), (40, 100), (100, 40), (100, 40)]]
    groups = list(size_groups(imgs, cfg, batch_size=3))
    assert [idx for idx, _ in groups] == [[0, 1], [2], [3, 4]]
    assert groups[0][1] == groups[2][1] != groups[1][1]
    assert [b.shape[0] for b in model_batches(imgs, cfg, 1)] == [1] * 5
    squash = PatchCoreConfig(input_size=64)
    assert [idx for idx, _ in size_groups(imgs, squash, batch_size=4)] == [[0, 1, 2, 3], [4]]


def test_the_rule_keeps_aspect_only_for_both_orientations() -> None:
    assert training_keeps_aspect(TRAIN_SIZES)
    assert not training_keeps_aspect([(250, 627)] * 8)  # one orientation: the elongated input keeps it
    assert not training_keeps_aspect([(300, 300)] * 8 + [(100, 280), (280, 100)])
    assert not training_keeps_aspect([])


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory):
    """A product of both orientations in MVTec layout and a tiny model trained on it at its own aspect."""
    from inspector.training import train

    root = tmp_path_factory.mktemp("keep_aspect")
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / sub).mkdir(parents=True)
    for i, size in enumerate(TRAIN_SIZES):
        cv2.imwrite(str(root / "train/good" / f"g{i:03d}.png"), _frame(i, size)[0][..., ::-1])
    for i, size in enumerate(TEST_SIZES):
        cv2.imwrite(str(root / "test/good" / f"t{i:03d}.png"), _frame(100 + i, size)[0][..., ::-1])
        img, mask = _frame(i, size, "crack")
        cv2.imwrite(str(root / "test/crack" / f"c{i:03d}.png"), img[..., ::-1])
        cv2.imwrite(str(root / "ground_truth/crack" / f"c{i:03d}_mask.png"), mask)
    manifest = build_manifest(root, "mvtec", name="both-ways")
    out = root / "model"
    result = train(manifest, root, out, config=TINY, device="cpu", batch_size=4)
    return root, manifest, out, result


def test_default_input_says_keep_aspect_for_the_product(product) -> None:
    root, manifest, _, _ = product
    h, w, keep = default_input(manifest, root)
    assert keep and h == w  # the square of the mixed rule, each frame at its own aspect within its pixels


def test_training_fits_every_frame_at_its_aspect_and_calibrates_leave_one_out(product) -> None:
    from inspector.training import item_batches, load_items
    from models.patchcore import load_patchcore
    from models.patchcore.leave_one_out import leave_one_out_scores

    root, manifest, out, result = product
    doc = json.loads((out / "model.json").read_text())
    assert doc["config"]["keep_aspect"] is True
    model, meta = load_patchcore(out, torch.device("cpu"))
    assert model.config.keep_aspect
    good = manifest.split("train")
    assert meta["calibration"] == "leave-one-out" and result.n_calibration == len(good)
    # Image n of the fit is bank_source n: scored again frame by frame, the stored scores agree.
    assert int(model.bank_source.max()) <= len(good) - 1
    again, maps = leave_one_out_scores(model, item_batches(good, root, model.config, 1))
    assert np.allclose(meta["calibration_scores"], again.numpy(), rtol=1e-4, atol=1e-5)
    assert maps.shape[1:] == model.config.input_hw
    # Frames were not squashed: a landscape frame's rows came from a landscape grid.
    img = load_items(good[1:2], root)[0]
    assert model_input_hw(model.config, img)[1] > model_input_hw(model.config, img)[0]


def test_inspection_scores_each_frame_at_its_own_size_in_order(product) -> None:
    from inspector.pipeline import Inspector

    root, _, out, _ = product
    insp = Inspector.load(out, "cpu")
    frames = [_frame(200 + i, s)[0] for i, s in enumerate([(300, 120), (120, 300), (300, 120), (150, 150)])]
    results = insp.inspect_images(frames)
    for f, r in zip(frames, results, strict=True):
        alone = insp.model.predict(to_batch([f], model_input_hw(insp.model.config, f)))
        assert r.score == pytest.approx(float(alone.score[0]), rel=1e-4, abs=1e-5)
        assert r.anomaly_map.shape == f.shape[:2]
    assert [r.frame_index for r in results] == [0, 1, 2, 3]


def test_station_analysis_splits_mixed_batches_and_keeps_their_order(product) -> None:
    from inspector.analysis import FrameAnalyser
    from inspector.pipeline import Inspector

    _, _, out, _ = product
    insp = Inspector.load(out, "cpu")
    frames = [_frame(300 + i, s)[0] for i, s in enumerate([(300, 120), (120, 300), (120, 300), (300, 120)])]
    plain = insp.inspect_images(frames)
    analysed = FrameAnalyser(insp).analyse(frames, sources=["a", "b", "c", "d"], start_index=5)
    assert [a.result.source for a in analysed] == ["a", "b", "c", "d"]
    assert [a.result.frame_index for a in analysed] == [5, 6, 7, 8]
    for p, a, f in zip(plain, analysed, frames, strict=True):
        assert a.result.score == pytest.approx(p.score, rel=1e-3, abs=1e-4)
        assert a.gradcam is not None and a.gradcam.shape == f.shape[:2]


def test_explainer_resizes_its_good_references_to_the_frame(product) -> None:
    from inspector.explain import Explainer
    from inspector.pipeline import Inspector

    _, _, out, _ = product
    insp = Inspector.load(out, "cpu")
    refs = [_frame(400 + i, (300, 120))[0] for i in range(2)]
    ex = Explainer(insp, reference=refs)
    frame = _frame(5, (120, 300), "crack")[0]
    e = ex.explain(frame, ("gradcam", "gradientshap"), {"samples": 4})
    assert set(e.maps) >= {"anomaly", "gradcam", "gradientshap"}
    assert all(m.shape == frame.shape[:2] for m in e.maps.values())


def test_onnx_export_refuses_a_model_without_one_input_size(product, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from inspector.onnx_export import export_model_dir

    _, _, out, _ = product
    with pytest.raises(ConfigError, match="aspect.*one fixed size"):
        export_model_dir(out, tmp_path / "m.onnx")


def test_an_update_adds_frames_at_their_aspect_and_recalibrates(product, tmp_path: Path) -> None:
    from inspector.model_update import update_model
    from models.patchcore import load_patchcore
    from models.patchcore.loo_state import STATE_FILE

    root, manifest, out, _ = product
    assert (out / STATE_FILE).is_file()  # kept from the second leave-one-out pass
    extra = tmp_path / "extra"
    extra.mkdir()
    for i, size in enumerate([(320, 120), (120, 320)]):
        cv2.imwrite(str(extra / f"n{i}.png"), _frame(500 + i, size)[0][..., ::-1])
    up = update_model(out, tmp_path / "v2", extra, add=_good_manifest(extra), device="cpu")
    model, meta = load_patchcore(tmp_path / "v2", torch.device("cpu"))
    _, old_meta = load_patchcore(out, torch.device("cpu"))
    assert model.config.keep_aspect and meta["n_train_images"] == len(manifest.split("train")) + 2
    assert meta["thresholds_from"].startswith("recalibrated")
    assert meta["thresholds"]["frr"]["n_good"] == len(manifest.split("train")) + 2
    assert up.added is not None and up.added.rows_added > 0  # the new frames reached the bank
    assert up.added.new_images is not None and len(up.added.new_images.ids) == 2
    assert (tmp_path / "v2" / STATE_FILE).is_file()
    from inspector.model_update import threshold_line

    line = threshold_line(meta)  # what train --update prints
    assert line.startswith(f"threshold {meta['thresholds']['decision']:.4f} (was ") and "from 14 good images" in line
    kept = {**old_meta, "thresholds_from": "the version updated from, x"}
    assert "kept: the version updated from" in threshold_line(kept)


def _good_manifest(folder: Path) -> Manifest:
    from inspector.images import sha256_file
    from inspector.manifest import ManifestItem

    items = [
        ManifestItem(path=p.name, label="normal", split="train", sha256=sha256_file(p))
        for p in sorted(folder.glob("*.png"))
    ]
    return Manifest("more", items)


def test_fine_score_with_own_aspect_is_refused_clearly(product, tmp_path: Path) -> None:
    from dataclasses import replace

    from inspector.training import train

    root, manifest, _, _ = product
    with pytest.raises(ConfigError, match="squash-aspect"):
        train(manifest, root, tmp_path / "m", config=replace(TINY, fine_score="max"), device="cpu")


@pytest.fixture(scope="module")
def both_ways_images() -> list[np.ndarray]:
    return [_frame(i, (144, 64) if i % 2 else (64, 144))[0] for i in range(16)]


FAST = {
    "backbones": ("efficientnet_lite0",),
    "layer_sets": ((("blocks.1", "blocks.2"), 8),),
    "ratios": (0.25,),
}


def test_the_search_scores_frames_at_their_own_aspect_when_the_rule_says_so(both_ways_images) -> None:
    base = PatchCoreConfig(pretrained=False, input_size=64)
    config, sel = select_config(
        both_ways_images, base=base, pinned={"input_size": 64}, n_fit=8, n_eval=4, allow_over_budget=True, **FAST
    )
    assert all(s.candidate.keep_aspect for s in sel.scored)
    assert config.keep_aspect and "own-aspect" in sel.chosen.candidate.name
    assert all(s.criterion is not None for s in sel.scored)
    pinned = {"input_size": 64, "keep_aspect": False}
    config, sel = select_config(
        both_ways_images, base=base, pinned=pinned, n_fit=8, n_eval=4, allow_over_budget=True, **FAST
    )
    assert not config.keep_aspect and not any(s.candidate.keep_aspect for s in sel.scored)


def test_train_cli_keeps_aspect_for_both_orientations_and_squash_pins_it_off(product, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from inspector.cli import main

    root, manifest, _, _ = product
    mpath = tmp_path / "m.json"
    mpath.write_text(json.dumps(manifest.to_json()))
    args = ["train", "--manifest", str(mpath), "--root", str(root), "--no-search", "--input-size", "64"]
    args += ["--layers", "blocks.1,blocks.2", "--coreset-ratio", "0.25", "--device", "cpu"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a"), "--keep-aspect"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "model.json").read_text())["config"]["keep_aspect"] is True
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--squash-aspect"])
    assert res.exit_code == 0, res.output
    assert "keep_aspect" not in json.loads((tmp_path / "b" / "model.json").read_text())["config"]



def test_eval_with_gradcam_on_frames_of_both_orientations(product) -> None:
    from inspector.evaluation import evaluate
    from inspector.pipeline import Inspector

    root, manifest, out, _ = product
    rep = evaluate(Inspector.load(out, "cpu"), manifest, root, gradcam=True).report
    assert (rep["n_normal"], rep["n_anomalous"]) == (len(TEST_SIZES), len(TEST_SIZES))
    for key in ("image_auroc", "pixel_auroc", "aupro", "gradcam_pixel_auroc"):
        assert rep[key] is not None and 0.0 <= rep[key] <= 1.0, key
    assert rep["out_of_domain"] == 0


def test_the_engineer_view_says_frames_keep_their_aspect(product) -> None:
    from inspector.app_logic import settings_report

    _, _, out, _ = product
    assert "each frame at its own aspect" in settings_report(out)


def test_explanation_checks_judge_frames_at_the_size_the_model_sees_them(product, tmp_path: Path) -> None:
    """The explain report measured every model on squares of its input size: a 280x112 model's
    frames were squashed to 280x280. Now each sample is at the model's own input for it."""
    import shutil

    from inspector.explain_checks import load_samples
    from inspector.explain_report import build_report
    from inspector.pipeline import Inspector

    root, manifest, out, _ = product
    cfg = Inspector.load(out, "cpu").model.config
    defective, masked = load_samples(manifest, root, cfg, 4, 0)
    shapes = {s.image.shape[:2] for s in defective}
    assert len(shapes) > 1 and any(h > w for h, w in shapes) and any(w > h for h, w in shapes)
    assert all(s.mask is not None and s.mask.shape == s.image.shape[:2] for s in masked)
    mpath = tmp_path / "m.json"
    mpath.write_text(json.dumps(manifest.to_json()))
    model = Path(shutil.copytree(out, tmp_path / "model"))
    res = build_report(model, mpath, root, tmp_path / "r", limit=2, samples=4, methods=["anomaly", "gradcam"])
    doc = json.loads((tmp_path / "r" / "explain_report.json").read_text())
    assert doc["keep_aspect"] is True and res is not None
    assert all(m["pixel_auroc"] is not None and m["deletion"] is not None for m in doc["methods"])
