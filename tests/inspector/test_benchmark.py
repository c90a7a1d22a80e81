"""The benchmark's JSON contract on tiny synthetic data; no timed assertions."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from inspector.benchmark import run_benchmark
from inspector.cli import main
from inspector.cli.bench_cmds import format_table

CONTRACT = ("fit_s", "ms_b1", "ms_b8", "image_auroc")
RATIOS = ("fit_speedup", "infer_speedup_b1", "floor_ratio_b1", "auroc_delta")


def _tiny_run(synthetic_pills, tiny_config, reference: bool) -> dict:
    root, manifest, _ = synthetic_pills
    return run_benchmark(
        manifest,
        root,
        device="cpu",
        coreset_ratio=0.1,
        reference=reference,
        default_config=tiny_config,
        repeats=1,
        min_round_s=0.0,
        pretrained=False,
        side_size=64,
        echo=None,
    )


def _finite(entry: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        assert isinstance(entry[key], float | int) and math.isfinite(entry[key]), key


def test_contract_without_reference(synthetic_pills, tiny_config) -> None:
    report = _tiny_run(synthetic_pills, tiny_config, reference=False)
    _finite(report["ours"], CONTRACT + ("bank_mb", "peak_rss_fit_mb", "peak_rss_infer_mb", "fps_b1", "fps_b8"))
    _finite(report["ours_default"], CONTRACT)
    _finite(report, ("backbone_ms_b1", "backbone_plain_ms_b1"))
    assert report["anomalib"] is None
    assert set(RATIOS) <= set(report["ratios"])
    assert math.isfinite(report["ratios"]["floor_ratio_b1"]) and report["ratios"]["fit_speedup"] is None
    assert math.isfinite(report["ratios"]["plain_floor_ratio_b1"])
    json.dumps(report)  # serialisable as is
    assert "not run" in format_table(report)


def test_contract_with_reference(synthetic_pills, tiny_config) -> None:
    pytest.importorskip(
        "anomalib.models.image.patchcore.torch_model",
        reason="anomalib (the optional reference) is not installed: pip install 'inspector[bench]'",
    )
    report = _tiny_run(synthetic_pills, tiny_config, reference=True)
    _finite(report["anomalib"], CONTRACT)
    _finite(report["ratios"], RATIOS)
    assert report["anomalib"]["fit_estimated"] is False
    # Same weights, features and bank rule: the two models must rank the test images alike.
    assert abs(report["ratios"]["auroc_delta"]) < 0.1


def test_cli_writes_json_and_table(synthetic_pills, tmp_path, monkeypatch) -> None:
    import inspector.benchmark as bench

    real = bench.run_benchmark

    def small(*args, **kwargs):  # the CLI's own settings, made tiny for a test
        kwargs.update(repeats=1, min_round_s=0.0, pretrained=False, side_size=64)
        from models.patchcore import PatchCoreConfig

        kwargs["default_config"] = PatchCoreConfig(input_size=64, pretrained=False, feature_stride=8)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "run_benchmark", small)
    root, _, path = synthetic_pills
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main, ["bench", "--manifest", str(path), "--root", str(root), "--json", str(out), "--no-reference"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(CONTRACT) <= set(doc["ours"]) and "backbone_ms_b1" in doc
    assert "fps b1" in result.output


def test_cli_says_when_the_reference_is_missing(synthetic_pills, tmp_path, monkeypatch) -> None:
    import inspector.bench_reference as ref

    monkeypatch.setattr(ref, "anomalib_available", lambda: False)
    root, _, path = synthetic_pills
    result = CliRunner().invoke(
        main, ["bench", "--manifest", str(path), "--root", str(root), "--json", str(tmp_path / "b.json")]
    )
    assert result.exit_code != 0
    assert "anomalib" in result.output and "--no-reference" in result.output
