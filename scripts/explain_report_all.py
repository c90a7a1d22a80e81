"""The explanation report on pillQC, crack and the synthetic masked sets; prints docs/measured.md's table.

For each dataset it trains a default model if none is in ``--workdir`` (synthetic sets are made
by ``inspector.synthetic`` with pixel masks), runs ``build_report`` (the code behind ``inspector
explain-report``) and keeps its JSON and PDF under ``--workdir/<name>/``. ``--table`` prints the
markdown table from the JSONs already written, so datasets can run as separate processes.
``--cost`` times the every-frame path (inspection alone vs inspection + Grad-CAM), interleaved.

Example:
  .venv/bin/python scripts/explain_report_all.py --data ../shared/data --only pillqc
  .venv/bin/python scripts/explain_report_all.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

DATASETS = ("pillqc", "crack", "synthetic-pill", "synthetic-surface")


def prepare(name: str, data: Path, work: Path) -> tuple[Path, Path, Path]:
    """(model dir, manifest path, root) for one dataset, training the model where missing."""
    from inspector.manifest import load_manifest
    from inspector.training import train

    model = work / name / "model"
    if name.startswith("synthetic-"):
        from inspector.synthetic import write_dataset
        from models.patchcore import PatchCoreConfig

        kind = name.split("-", 1)[1]
        root = work / "synthetic"
        manifest_path = root / f"{kind}.json"
        if not manifest_path.is_file():
            write_dataset(root, kind, n_train=30, n_test_good=6, n_test_defect=8, seed=0).save(manifest_path)
        config = PatchCoreConfig(input_size=128)  # as scripts/bench_explain.py, whose figures docs/measured.md quotes
    else:
        root, manifest_path, config = data / name, PROJECT / "data_manifests" / f"{name}.json", None
    if not (model / "model.json").is_file():
        train(load_manifest(manifest_path), root, model, config=config, device="cpu")
    return model, manifest_path, root


def every_frame_cost(model: Path, manifest_path: Path, root: Path, frames: int = 20) -> dict[str, float]:
    """ms per frame: inspection alone and with Grad-CAM (the station's every-frame path), interleaved."""
    from inspector import explainers
    from inspector.explain import Explainer
    from inspector.manifest import load_manifest
    from inspector.pipeline import Inspector
    from inspector.training import load_items

    inspector = Inspector.load(model, "cpu")
    ex = Explainer.load(inspector)
    items = [it for it in load_manifest(manifest_path).split("test") if it.is_anomalous][:frames]
    images = load_items(items, root)
    method = explainers.every_frame_method()
    ex.explain(images[0], (method,))
    inspector.inspect_images(images[:1])
    a, b = [], []
    for img in images:  # interleaved, so load on the shared host hits both alike
        t = time.perf_counter()
        inspector.inspect_images([img])
        a.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        ex.explain(img, (method,))
        b.append((time.perf_counter() - t) * 1000)
    return {"inspect_ms": float(sorted(a)[len(a) // 2]), "inspect_plus_gradcam_ms": float(sorted(b)[len(b) // 2])}


def fmt(v: float | None, d: int = 3) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def table(work: Path) -> str:
    docs = {
        n: json.loads((work / n / "explain_report.json").read_text())
        for n in DATASETS
        if (work / n / "explain_report.json").is_file()
    }
    if not docs:
        return "no reports yet"
    names = list(next(iter(docs.values()))["methods"])
    lines = [
        "| method | " + " | ".join(docs) + " |",
        "|---|" + "---|" * len(docs),
    ]
    for m in names:
        cells = []
        for doc in docs.values():
            f = next((x for x in doc["methods"] if x["name"] == m["name"]), None)
            if f is None:
                cells.append("-")
                continue
            cells.append(
                f"**{f['verdict']}**: px AUROC {fmt(f['pixel_auroc'])}, del {fmt(f['deletion'], 2)} "
                f"(rand {fmt(f['deletion_random'], 2)}, shift {fmt(f['deletion_shifted'], 2)}), "
                f"sanity {fmt(f['sanity_backbone'], 2)}"
                + (f"/{fmt(f['sanity_labels'], 2)}" if f["sanity_labels"] is not None else "")
                + f", stable {fmt(f['stability_shift'], 2)}/{fmt(f['stability_jpeg'], 2)}, {fmt(f['ms'], 0)} ms"
            )
        lines.append(f"| {m['name']} | " + " | ".join(cells) + " |")
    blob = " | ".join(fmt(d["centred_blob_pixel_auroc"]) for d in docs.values())
    lines.append(f"| centred blob (px AUROC) | {blob} |")
    where = " | ".join(
        f"{d['sample']['localisation_on']}, {len(d['sample']['defective'])} defective, {d['seconds']:.0f} s"
        for d in docs.values()
    )
    lines.append(f"| localisation on; sample; report time | {where} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "data")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "explain_reports")
    ap.add_argument("--only", choices=DATASETS, action="append")
    ap.add_argument("--limit", type=int, default=2, help="test images per class")
    ap.add_argument("--samples", type=int, default=32, help="LIME/KernelSHAP samples")
    ap.add_argument("--table", action="store_true", help="only print the table of the reports already made")
    ap.add_argument("--cost", action="store_true", help="also time the every-frame path")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--checks", type=int, default=None, help="sanity/stability on at most this many defective images")
    args = ap.parse_args()
    os.environ.setdefault("INSPECTOR_NO_PROGRESS", "1")
    if args.table:
        print(table(args.workdir))
        return
    import torch

    from inspector.explain_report import build_report

    torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    for name in args.only or DATASETS:
        model, manifest_path, root = prepare(name, args.data, args.workdir)
        if args.cost:
            print(name, "every-frame cost (median ms, shared host):", every_frame_cost(model, manifest_path, root))
        r = build_report(
            model,
            manifest_path,
            root,
            args.workdir / name,
            limit=args.limit,
            samples=args.samples,
            max_checks=args.checks,
            record=False,
            progress=lambda msg, n=name: print(f"[{n}] {msg}", flush=True),
        )
        print(f"[{name}] {r.pdf_path} in {r.doc['seconds']} s", flush=True)
    print(table(args.workdir))


if __name__ == "__main__":
    main()
