"""Issue 7's scale figure: train on many images and report peak memory, fit time and accuracy.

    .venv/bin/python scripts/bench_scale.py [--images 10000] [--size 256] [--coreset-ratio 0.1]

Generates a synthetic pill dataset of that many good training images (cached in ``--workdir``),
then trains in a child process, so that the reported peak resident memory (``ru_maxrss`` of
the child) is the whole training run's and nothing else's: file checks, feature extraction in
batches, the chunked coreset, the bank's neighbour table, calibration. Then it scores the test
split (good pills and pills with chips and dirt) for the image AUROC.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector.manifest import Manifest, load_manifest  # noqa: E402


def dataset(workdir: Path, n_images: int, size: int, n_test: int) -> tuple[Path, Path]:
    """The manifest and root of a synthetic pill set, written once and reused."""
    root = workdir / f"pill-{n_images}-{size}px"
    path = root / "manifest.json"
    if path.is_file():
        return path, root
    from inspector.synthetic import write_dataset

    print(f"writing {n_images} training images of {size} px to {root} (once) ...", flush=True)
    t = time.perf_counter()
    m: Manifest = write_dataset(
        root, "pill", n_train=n_images, n_test_good=n_test, n_test_defect=n_test, seed=1, size=size
    )
    m.save(path)
    print(f"  written in {time.perf_counter() - t:.0f} s", flush=True)
    return path, root


def child(args: argparse.Namespace) -> None:
    """Trains and prints one JSON line; run in its own process so its peak memory is its own."""
    import torch

    from inspector.training import train
    from models.patchcore import PatchCoreConfig

    torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    config = PatchCoreConfig(coreset_ratio=args.coreset_ratio, coreset_chunk_rows=args.chunk_rows)
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 30 or done == total:
            last[0] = now
            print(f"  [{time.strftime('%H:%M:%S')}] {stage} {done}/{total}", file=sys.stderr, flush=True)

    t = time.perf_counter()
    res = train(load_manifest(args.manifest), args.root, args.out, config=config, device="cpu", progress=progress)
    total_s = time.perf_counter() - t
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    print(
        json.dumps(
            {
                "n_train": res.n_train,
                "n_calibration": res.n_calibration,
                "fit_s": round(res.fit_seconds, 1),
                "calibration_s": json.loads((args.out / "model.json").read_text())["metadata"]["calibration_seconds"],
                "train_total_s": round(total_s, 1),
                "peak_rss_gb": round(peak_gb, 2),
                "memory_bank": list(res.memory_bank_shape),
            }
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000, help="good training images (10%% are held out)")
    ap.add_argument("--size", type=int, default=256, help="side of the generated images in pixels")
    ap.add_argument("--test", type=int, default=60, help="test images per class (good, chip, dirt)")
    ap.add_argument("--coreset-ratio", type=float, default=0.1)
    ap.add_argument("--chunk-rows", type=int, default=65536, help="patches per greedy coreset search")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/inspector_scale"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0
    manifest, root = dataset(args.workdir, args.images, args.size, args.test)
    out = args.workdir / f"model-{args.images}-r{args.coreset_ratio}-c{args.chunk_rows}"
    cmd = [sys.executable, __file__, "--child", "--manifest", str(manifest), "--root", str(root), "--out", str(out)]
    cmd += ["--coreset-ratio", str(args.coreset_ratio), "--chunk-rows", str(args.chunk_rows)]
    cmd += ["--threads", str(args.threads)]
    print(f"training on {args.images} images in a child process ...", flush=True)
    run = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    fig = json.loads(run.stdout.strip().splitlines()[-1])

    from inspector.evaluation import evaluate
    from inspector.pipeline import Inspector

    report = evaluate(Inspector.load(out, "cpu"), load_manifest(manifest), root).report
    fig.update(
        images=args.images,
        image_size=args.size,
        coreset_ratio=args.coreset_ratio,
        chunk_rows=args.chunk_rows,
        image_auroc=round(report["image_auroc"], 4),
        per_defect=report["per_defect"],
    )
    print(
        f"\n{fig['n_train']} training images ({args.size} px), {fig['n_calibration']} of them calibrate: "
        f"fit {fig['fit_s']:.0f} s, calibration {fig['calibration_s']:.0f} s, "
        f"whole training {fig['train_total_s']:.0f} s, "
        f"peak memory {fig['peak_rss_gb']:.2f} GB (target <= 8), bank {fig['memory_bank']}, "
        f"image AUROC {fig['image_auroc']:.4f}"
    )
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
