"""The embedded demo: synthetic data -> trained models -> figures, with no download at all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspector.evaluation import evaluate, format_report
from inspector.pipeline import Inspector
from inspector.settings import cache_dir
from inspector.synthetic import DATASETS, write_dataset
from inspector.training import Progress, train
from models.patchcore.serialization import read_model_json

DEMO_TRAIN = 64


def demo_paths(workdir: str | Path | None = None) -> tuple[Path, Path]:
    base = Path(workdir) if workdir else cache_dir() / "demo"
    return base / "data", base / "models"


def prepare_demo_model(
    kind: str,
    workdir: str | Path | None = None,
    *,
    device: str = "auto",
    progress: Progress | None = None,
    seed: int = 0,
) -> tuple[Path, Path, Path]:
    """Writes the synthetic dataset and trains its model unless both exist; returns
    (data root, manifest path, model dir). The app's first start calls this too."""
    data_root, models_root = demo_paths(workdir)
    manifest_path = data_root / f"{kind}.json"
    model_dir = models_root / kind
    if not manifest_path.is_file():
        manifest = write_dataset(data_root, kind, n_train=DEMO_TRAIN, seed=seed)
        manifest.save(manifest_path)
    else:
        from inspector.manifest import load_manifest

        manifest = load_manifest(manifest_path)
    if not (model_dir / "model.json").is_file():
        # A quarter held out: enough good scores for the threshold's tail (see calibration). The
        # settings search runs as in ``inspector train`` (it keeps the defaults unless beaten
        # beyond chance; about 2 s here), so the engineer's "Settings…" window has its table.
        from inspector.autoconfig import SearchOptions

        train(
            manifest, data_root, model_dir, device=device, progress=progress, holdout_share=0.25, search=SearchOptions()
        )
    return data_root, manifest_path, model_dir


def run_demo(
    workdir: str | Path | None = None,
    *,
    device: str = "auto",
    progress: Progress | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, dict[str, Any]]:
    """Trains and evaluates one model per synthetic dataset; returns their reports."""
    from inspector.manifest import load_manifest

    reports = {}
    for kind in DATASETS:
        echo(f"== synthetic {kind}: making data and training (once; cached afterwards)")
        data_root, manifest_path, model_dir = prepare_demo_model(kind, workdir, device=device, progress=progress)
        ev = evaluate(Inspector.load(model_dir, device), load_manifest(manifest_path), data_root)
        echo(format_report(ev.report))
        search = read_model_json(model_dir).get("metadata", {}).get("settings_search", {})
        if "chosen" in search:
            echo(f"settings: {search['chosen']} ({search['reason'].split(':')[0]})")
        echo(f"model: {model_dir}")
        reports[kind] = ev.report
    return reports
