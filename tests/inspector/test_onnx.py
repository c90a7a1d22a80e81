"""ONNX export: scores through ONNX Runtime match torch; predict --onnx writes the same JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx", reason="ONNX export needs the onnx extra: pip install 'inspector[onnx]'")
pytest.importorskip("onnxruntime", reason="ONNX inference needs the onnx extra: pip install 'inspector[onnx]'")

from inspector.cli import main  # noqa: E402
from inspector.onnx_export import OnnxInspector, export_model_dir  # noqa: E402
from inspector.pipeline import Inspector  # noqa: E402
from inspector.preprocess import to_batch  # noqa: E402
from inspector.training import load_items  # noqa: E402


@pytest.fixture(scope="module")
def exported(trained_tiny, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_model_dir(trained_tiny, path)
    return str(path)


def test_scores_match_torch(exported, trained_tiny, synthetic_pills) -> None:
    root, manifest, _ = synthetic_pills
    images = load_items(manifest.split("test"), root)
    torch_side = Inspector.load(trained_tiny, "cpu")
    onnx_side = OnnxInspector(exported)
    batch = to_batch(images, torch_side.model.config.input_size)
    pred = torch_side.model.predict(batch)
    scores, maps = onnx_side.predict(batch.numpy())
    np.testing.assert_allclose(scores, pred.score.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(maps, pred.anomaly_map.numpy(), atol=1e-3, rtol=1e-4)
    assert maps.shape == tuple(pred.anomaly_map.shape)


def test_thresholds_travel_in_the_metadata(exported, trained_tiny) -> None:
    onnx_side = OnnxInspector(exported)
    assert onnx_side.thresholds == Inspector.load(trained_tiny, "cpu").thresholds


def test_predict_onnx_writes_json_and_png(exported, trained_tiny, synthetic_pills, tmp_path) -> None:
    root, manifest, _ = synthetic_pills
    item = manifest.split("test")[0]
    out = tmp_path / "pred"
    result = CliRunner().invoke(main, ["predict", "--onnx", exported, "--out", str(out), str(root / item.path)])
    assert result.exit_code == 0, result.output
    stem = (root / item.path).stem
    doc = json.loads((out / f"{stem}.json").read_text())
    assert {"score", "threshold", "verdict"} <= set(doc) and doc["runtime"] == "onnxruntime"
    assert (out / f"{stem}.png").is_file()
    torch_score = Inspector.load(trained_tiny, "cpu").inspect_images(load_items([item], root))[0].score
    assert abs(doc["score"] - torch_score) < 1e-4


def test_export_cli_and_bad_inputs(trained_tiny, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "m.onnx"
    result = runner.invoke(main, ["export", "--model", str(trained_tiny), "--onnx", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.stat().st_size > 0
    both = runner.invoke(main, ["predict", "--out", str(tmp_path), "x.png"])
    assert both.exit_code != 0 and "--onnx" in both.output
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    bad = runner.invoke(main, ["predict", "--onnx", str(junk), "--out", str(tmp_path / "o"), str(out)])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
