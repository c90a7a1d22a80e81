"""The Explainer, the defect classifier beside the model, and the explain / predict commands."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from inspector.cli import main
from inspector.errors import ModelError
from inspector.explain import (
    HEAD_JSON,
    HEAD_TENSORS,
    DefectLabelsError,
    Explainer,
    NoDefectClassifierError,
    UnknownMethodError,
    agreement,
    load_defect_head,
    train_defect_head,
)
from inspector.images import read_image
from inspector.manifest import Manifest
from inspector.pipeline import Inspector


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture()
def model_copy(trained_tiny: Path, tmp_path: Path) -> Path:
    """A private copy of the session model, so a defect head written here stays here."""
    return Path(shutil.copytree(trained_tiny, tmp_path / "model"))


@pytest.fixture(scope="module")
def with_head(trained_tiny: Path, synthetic_pills, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, manifest, _ = synthetic_pills
    d = Path(shutil.copytree(trained_tiny, tmp_path_factory.mktemp("head") / "model"))
    train_defect_head(d, manifest, root, share=0.5)
    return d


def a_frame(synthetic_pills, folder: str) -> np.ndarray:
    root, _, _ = synthetic_pills
    return read_image(sorted((root / "pill" / folder).glob("*.png"))[0])


def test_agreement_is_the_iou_of_top_regions() -> None:
    a = np.zeros((20, 20), np.float32)
    a[:2] = 1  # the top 10 %: rows 0-1
    assert agreement(a, a) == 1.0
    b = np.zeros_like(a)
    b[-2:] = 1
    assert agreement(a, b) == 0.0
    assert agreement(a, np.zeros_like(a)) is None  # a flat map points nowhere


def test_explain_gives_frame_sized_maps_and_figures(trained_tiny: Path, synthetic_pills) -> None:
    ex = Explainer.load(Inspector.load(trained_tiny, "cpu"))
    frame = a_frame(synthetic_pills, "chip")
    frame = cv2.resize(frame, (120, 90))  # not square, not the input size
    e = ex.explain(frame, ("anomaly", "gradcam", "saliency"))
    assert set(e.maps) == {"anomaly", "gradcam", "saliency"}
    for m in e.maps.values():
        assert m.shape == (90, 120) and m.dtype == np.float32 and np.isfinite(m).all() and m.min() >= 0
    shown = e.display("gradcam")  # zero at the colour floor, peak at the score
    assert abs(float(shown.max()) - max(e.score, e.floor)) < 1e-3 * max(1.0, e.score)
    assert float(shown[e.maps["gradcam"] > 0].min()) >= e.floor - 1e-5
    assert e.agreement is not None and 0.0 <= e.agreement <= 1.0
    assert set(e.ms) == {"anomaly", "gradcam", "saliency"} and all(v >= 0 for v in e.ms.values())
    inspected = Inspector.load(trained_tiny, "cpu").inspect_images([frame])[0]
    assert abs(inspected.score - e.score) < 1e-4  # the same score the pipeline gives
    assert e.defect_type is None and e.defect_probabilities == {}  # no head: absent, not faked


def test_unknown_method_and_defect_gradcam_without_head_are_errors(trained_tiny: Path, synthetic_pills) -> None:
    ex = Explainer.load(Inspector.load(trained_tiny, "cpu"))
    frame = a_frame(synthetic_pills, "good")
    with pytest.raises(UnknownMethodError, match="no-such-method"):
        ex.explain(frame, ("anomaly", "no-such-method"))
    assert not ex.has_defect_classifier
    with pytest.raises(NoDefectClassifierError, match="no defect classifier"):
        ex.explain(frame, ("defect-gradcam",))


def test_defect_head_trains_saves_and_loads_without_pickle(with_head: Path, synthetic_pills) -> None:
    doc = json.loads((with_head / HEAD_JSON).read_text())
    assert doc["classes"] == ["chip", "dirt"] and doc["n_train"] == {"chip": 2, "dirt": 2}
    assert doc["n_heldout"] == {"chip": 2, "dirt": 2} and 0.0 <= doc["heldout_accuracy"] <= 1.0
    inspector = Inspector.load(with_head, "cpu")
    trained = inspector.thresholds
    inspector.thresholds = trained.with_decision(1e-9)  # flagged whatever the tiny model scores
    ex = Explainer.load(inspector)
    assert ex.has_defect_classifier
    frame = a_frame(synthetic_pills, "dirt")
    e = ex.explain(frame, ("anomaly", "gradcam", "defect-gradcam"))
    assert set(e.defect_probabilities) == {"chip", "dirt"}
    assert abs(sum(e.defect_probabilities.values()) - 1) < 1e-5
    assert e.maps["defect-gradcam"].shape == e.maps["anomaly"].shape
    assert e.verdict == "DEFECT" and e.defect_type in ("chip", "dirt")
    assert e.defect_probability == e.defect_probabilities[e.defect_type]
    inspector.thresholds = trained.with_decision(1e9)  # judged OK: no defect type is claimed
    ok = ex.explain(frame, ("anomaly", "gradcam"))
    assert ok.verdict == "OK" and ok.defect_type is None and ok.defect_probability is None


def test_a_pickled_or_foreign_defect_head_is_refused(with_head: Path, tmp_path: Path) -> None:
    d = Path(shutil.copytree(with_head, tmp_path / "m"))
    doc = json.loads((d / HEAD_JSON).read_text())
    (d / HEAD_JSON).write_text(json.dumps({**doc, "model_memory_bank_sha256": "0" * 64}))
    with pytest.raises(ModelError, match="another model"):
        load_defect_head(Inspector.load(d, "cpu"))
    (d / HEAD_TENSORS).write_bytes(pickle.dumps({"linear.weight": [1.0]}))
    from inspector.images import sha256_file

    (d / HEAD_JSON).write_text(json.dumps({**doc, "tensors_sha256": sha256_file(d / HEAD_TENSORS)}))
    with pytest.raises(ModelError, match="usable defect classifier"):
        load_defect_head(Inspector.load(d, "cpu"))


def test_no_defect_head_without_two_labelled_defect_types(model_copy: Path, synthetic_pills) -> None:
    root, manifest, _ = synthetic_pills
    only_chip = Manifest("chip only", [it for it in manifest.items if it.defect != "dirt"])
    with pytest.raises(DefectLabelsError, match="at least two"):
        train_defect_head(model_copy, only_chip, root)
    assert not (model_copy / HEAD_TENSORS).exists()
    assert load_defect_head(Inspector.load(model_copy, "cpu")) is None


def test_explain_cli_writes_a_png_per_method_and_a_json(trained_tiny: Path, synthetic_pills, tmp_path: Path) -> None:
    root, _, _ = synthetic_pills
    img = sorted((root / "pill" / "chip").glob("*.png"))[0]
    args = ("--model", str(trained_tiny), "--method", "anomaly,gradcam", "--out", str(tmp_path), str(img))
    code, out = run("explain", *args)
    assert code == 0, out
    for method in ("anomaly", "gradcam"):
        png = cv2.imread(str(tmp_path / f"{img.stem}_{method}.png"))
        assert png is not None and png.shape[1] > png.shape[0]  # frame | overlay
    doc = json.loads((tmp_path / f"{img.stem}.json").read_text())
    assert {"score", "verdict", "defect_type", "agreement", "ms"} <= set(doc)
    assert doc["defect_type"] is None and set(doc["ms"]) == {"anomaly", "gradcam"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--method", "no-such-method", "{img}"), "unknown explanation method"),
        (("--method", "defect-gradcam", "{img}"), "no defect classifier"),
        (("{tmp}/notes.png",), "not an image file"),
    ],
)
def test_explain_cli_errors_are_one_line(
    trained_tiny: Path, synthetic_pills, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    root, _, _ = synthetic_pills
    (tmp_path / "notes.png").write_text("hello")
    img = sorted((root / "pill" / "good").glob("*.png"))[0]
    filled = [a.format(img=img, tmp=tmp_path) for a in args]
    code, out = run("explain", "--model", str(trained_tiny), "--out", str(tmp_path / "o"), *filled)
    assert code != 0 and message in out and "Traceback" not in out
    assert out.strip().count("\n") == 0
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_train_defects_cli_reports_heldout_accuracy(model_copy: Path, synthetic_pills) -> None:
    root, _, path = synthetic_pills
    code, out = run("train-defects", "--model", str(model_copy), "--manifest", str(path), "--root", str(root))
    assert code == 0, out
    assert "held-out accuracy" in out and (model_copy / HEAD_TENSORS).is_file()


def test_predict_writes_a_three_panel_png(trained_tiny: Path, synthetic_pills, tmp_path: Path) -> None:
    root, _, _ = synthetic_pills
    img = sorted((root / "pill" / "dirt").glob("*.png"))[0]  # 96 x 96
    code, out = run("predict", "--model", str(trained_tiny), "--out", str(tmp_path), str(img))
    assert code == 0, out
    png = cv2.imread(str(tmp_path / f"{img.stem}.png"))
    # frame (320) | anomaly map (320 + colour bar 56) | Grad-CAM (320 + 56), with two 6 px gaps
    assert png.shape[1] == 320 + 2 * (320 + 56) + 2 * 6
    doc = json.loads((tmp_path / f"{img.stem}.json").read_text())
    assert {"score", "threshold", "verdict", "latency_ms", "frame_sha256", "model", "agreement"} <= set(doc)


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_explanations_keep_their_own_palette_and_no_threshold_outline(
    command: str, trained_tiny: Path, synthetic_pills, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the station and the auditor: only the anomaly map (score units) is outlined at the threshold."""
    import inspector.overlay as overlay

    drawn: list[tuple[str, float | None, int]] = []
    real = overlay.panels

    def recording(frame, maps, *args, colormaps=None, **kwargs):
        cmaps = colormaps or [overlay.COLORMAP] * len(maps)
        drawn.extend((title, level, cmap) for (title, _, _, _, level), cmap in zip(maps, cmaps, strict=True))
        return real(frame, maps, *args, colormaps=colormaps, **kwargs)

    monkeypatch.setattr(overlay, "panels", recording)
    root, _, _ = synthetic_pills
    img = sorted((root / "pill" / "chip").glob("*.png"))[0]
    extra = ("--method", "anomaly,gradcam") if command == "explain" else ()
    code, out = run(command, "--model", str(trained_tiny), *extra, "--out", str(tmp_path), str(img))
    assert code == 0, out
    decision = Inspector.load(trained_tiny, "cpu").thresholds.decision
    anomaly = [d for d in drawn if d[0].startswith("anomaly")]
    gradcam = [d for d in drawn if d[0].startswith("Grad-CAM")]
    assert anomaly and gradcam
    assert all(level == pytest.approx(decision) and cmap == overlay.COLORMAP for _, level, cmap in anomaly)
    assert all(level is None and cmap == overlay.GRADCAM_COLORMAP for _, level, cmap in gradcam)
