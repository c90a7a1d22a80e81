"""Shared fixtures: tiny synthetic datasets, tiny random-weight models, the real data root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

PROJECT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("INSPECTOR_REAL_DATA", PROJECT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the user's real data folder."""
    monkeypatch.setenv("INSPECTOR_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("INSPECTOR_NO_PROGRESS", "1")


def real_data(name: str) -> Path:
    """The real dataset folder, or a skip that says why (CI has it; a laptop may not)."""
    root = REAL_DATA / name
    if not root.is_dir():
        pytest.skip(f"real dataset '{name}' not found at {root} (set INSPECTOR_REAL_DATA)")
    return root


@pytest.fixture(scope="session")
def tiny_config():
    """Random-weight efficientnet stages at 64 px: fast, deterministic, no weights file."""
    from models.patchcore import PatchCoreConfig

    return PatchCoreConfig(
        layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.25, pretrained=False, feature_stride=8
    )


@pytest.fixture(scope="session")
def synthetic_pills(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic pill dataset on disk: (root, manifest, manifest path)."""
    from inspector.synthetic import write_dataset

    root = tmp_path_factory.mktemp("synthetic")
    manifest = write_dataset(root, "pill", n_train=16, n_test_good=6, n_test_defect=4, size=96)
    path = root / "pill.json"
    manifest.save(path)
    return root, manifest, path


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory, synthetic_pills, tiny_config):
    """A tiny model trained once for the session on the synthetic pills."""
    from inspector.training import train

    root, manifest, _ = synthetic_pills
    out = tmp_path_factory.mktemp("models") / "tiny"
    torch.manual_seed(0)
    # A hold-out keeps this model's bank unlike one trained by default (leave-one-out, all images).
    train(manifest, root, out, config=tiny_config, device="cpu", holdout_share=0.25, calibration="holdout")
    return out
