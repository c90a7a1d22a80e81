"""The README's main job, headless: the embedded demo trains (with the settings search) and evaluates."""

from __future__ import annotations

from pathlib import Path

from inspector.demo import run_demo
from inspector.synthetic import DATASETS


def test_demo_trains_searches_and_reports_every_synthetic_product(tmp_path: Path) -> None:
    said: list[str] = []
    reports = run_demo(tmp_path, device="cpu", echo=said.append)
    assert set(reports) == set(DATASETS)
    for kind, report in reports.items():
        assert report["image_auroc"] >= 0.95, (kind, report["image_auroc"])
        assert report["pixel_auroc"] is not None and report["pixel_auroc"] >= 0.9
    text = "\n".join(said)
    assert text.count("settings: ") == len(DATASETS) and "without a search" in text
    assert all((tmp_path / "models" / kind / "model.json").is_file() for kind in DATASETS)  # only the workdir
