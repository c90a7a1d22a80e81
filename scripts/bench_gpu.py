"""The same work on two devices side by side in one process: training, scoring and the station's
per-frame analysis (score + map + Grad-CAM), with the defaults that ``inspector train`` uses.

    .venv/bin/python scripts/bench_gpu.py --data ../shared/data --devices cuda cpu [--json out.json]

For each dataset and device it trains with the defaults (the aspect of elongated frames kept, as
``train`` does without ``--search``), evaluates the test split, and times, after a warm-up:
score + map per frame at batch 1 and 8, and the station's ``FrameAnalyser`` (one forward and one
backward pass: score, map, Grad-CAM) one frame per call. With ``--wide`` it also times anomalib's
settings (blocks.2 + blocks.4 at 224 px), the candidate that the 33 ms budget refuses on a CPU.
Image AUROC must agree across devices to round-off: the same weights and the same coreset seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector.analysis import FrameAnalyser  # noqa: E402
from inspector.autoconfig import default_input_hw  # noqa: E402
from inspector.cli.common import write_json  # noqa: E402
from inspector.evaluation import evaluate  # noqa: E402
from inspector.manifest import load_manifest  # noqa: E402
from inspector.pipeline import Inspector  # noqa: E402
from inspector.training import load_items, train  # noqa: E402
from models.patchcore import PatchCoreConfig  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ms_batched(insp: Inspector, images: list[np.ndarray], batch: int, device: str, repeats: int = 3) -> float:
    """Median ms per image for score + map, after a warm-up batch."""
    insp.inspect_images(images[:batch])
    runs = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        n = 0
        for i in range(0, len(images) - batch + 1, batch):
            insp.inspect_images(images[i : i + batch])
            n += batch
        _sync(device)
        runs.append((time.perf_counter() - t0) * 1000 / n)
    return float(np.median(runs))


def ms_station(insp: Inspector, frames: list[np.ndarray], device: str) -> float:
    """Median ms per frame of the station's one-pass analysis with Grad-CAM, one frame per call."""
    analyser = FrameAnalyser(insp)
    analyser.analyse(frames[:1])
    analyser.analyse(frames[:1])
    times = []
    for f in frames:
        _sync(device)
        t0 = time.perf_counter()
        analyser.analyse([f])
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def run(name: str, root: Path, out: Path, device: str, config: PatchCoreConfig, n_frames: int) -> dict[str, Any]:
    manifest = load_manifest(ROOT / "data_manifests" / f"{name}.json")
    _sync(device)
    t0 = time.perf_counter()
    res = train(manifest, root, out, config=config, device=device)
    _sync(device)
    train_s = time.perf_counter() - t0
    insp = Inspector.load(res.model_dir, device)
    rep = evaluate(insp, manifest, root, gradcam=False).report
    sample = load_items(manifest.split("test")[:48], root)
    return {
        "input_hw": list(insp.model.config.input_hw),
        "layers": list(insp.model.config.layers),
        "bank_rows": int(res.memory_bank_shape[0]),
        "image_auroc": round(float(rep["image_auroc"]), 4),
        "pixel_auroc": rep.get("pixel_auroc"),
        "false_reject": round(float(rep["false_reject_rate"]), 4),
        "miss": round(float(rep["miss_rate"]), 4),
        "train_s": round(train_s, 2),
        "fit_s": round(res.fit_seconds, 2),
        "ms_b1": round(ms_batched(insp, sample[:16], 1, device), 2),
        "ms_b8": round(ms_batched(insp, sample, 8, device), 2),
        "ms_station_gradcam": round(ms_station(insp, sample[:n_frames], device), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--datasets", nargs="+", default=["pillqc", "crack", "ksdd"])
    ap.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    ap.add_argument("--wide", action="store_true", help="also anomalib's settings: blocks.2+blocks.4 at 224 px")
    ap.add_argument("--frames", type=int, default=32, help="frames timed one by one with Grad-CAM")
    ap.add_argument("--out", type=Path, default=Path("/tmp/inspector_bench_gpu"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    devices = [d for d in args.devices if not d.startswith("cuda") or torch.cuda.is_available()]
    if devices != args.devices:
        print(f"no CUDA device here: running on {devices} only")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"GPU {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}", flush=True)
    results: dict[str, Any] = {}
    failed: list[str] = []
    for name in args.datasets:
        root = args.data / name
        if not root.is_dir():
            print(f"{name}: skipped, data not found at {root}")
            continue
        h, w = default_input_hw(load_manifest(ROOT / "data_manifests" / f"{name}.json"), root)
        configs = {"default": PatchCoreConfig(input_size=h or 112, input_width=w)}
        if args.wide:
            configs["b2+b4@224"] = PatchCoreConfig(layers=("blocks.2", "blocks.4"), input_size=224)
        for cname, cfg in configs.items():
            for device in devices:
                key = f"{name}/{cname}/{device}"
                try:
                    results[key] = run(name, root, args.out / key.replace("/", "_"), device, cfg, args.frames)
                except Exception:  # one failing device must not hide the other's figures
                    traceback.print_exc()
                    failed.append(key)
                    continue
                print(key, json.dumps(results[key]), flush=True)
    cols = ("image_auroc", "false_reject", "miss", "bank_rows", "train_s", "ms_b1", "ms_b8", "ms_station_gradcam")
    print("\n" + f"{'run':<28}" + "".join(f"{c:>20}" for c in cols))
    for key, r in results.items():
        print(f"{key:<28}" + "".join(f"{r[c]:>20}" for c in cols))
    if args.json:
        write_json(args.json, results)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
