"""Checks on the real datasets in ../shared/data; each skips with the reason where it is absent.

Accuracy targets are measured by scripts/bench_core.py; these are regression floors that a
broken feature path, calibration or manifest would fall through.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from inspector.evaluation import evaluate
from inspector.manifest import Manifest, load_manifest, verify_manifest
from inspector.pipeline import Inspector
from inspector.training import train
from tests.conftest import PROJECT, real_data

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("name", ["pillqc", "crack"])
def test_manifest_matches_the_shared_files(name: str) -> None:
    root = real_data(name)
    m = load_manifest(PROJECT / "data_manifests" / f"{name}.json")
    assert verify_manifest(m, root) == []


def _subset(m: Manifest, n_train: int, n_test_each: int) -> Manifest:
    train_items = [it for it in m.items if it.split == "train"][:n_train]
    test_items: list = []
    for label in ("normal", "anomalous"):
        test_items += [it for it in m.items if it.split == "test" and it.label == label][:n_test_each]
    return replace(m, items=train_items + test_items)


@pytest.mark.parametrize("name, n_train, n_test, floor", [("pillqc", 100, 200, 0.99), ("crack", 60, 60, 0.99)])
def test_default_model_on_real_data(name: str, n_train: int, n_test: int, floor: float, tmp_path: Path) -> None:
    root = real_data(name)
    m = _subset(load_manifest(PROJECT / "data_manifests" / f"{name}.json"), n_train, n_test)
    result = train(m, root, tmp_path / "model", device="cpu")
    report = evaluate(Inspector.load(result.model_dir, "cpu"), m, root).report
    assert report["image_auroc"] >= floor, report
    assert all(v >= floor - 0.01 for v in report["per_defect"].values()), report
    assert report["false_reject_rate"] is not None and report["false_reject_rate"] <= 0.25, report
