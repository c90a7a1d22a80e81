"""Grad-CAM's backward pass through the nearest-neighbour search: chosen rows only, against the whole product.

    .venv/bin/python scripts/bench_grad_search.py --data ../shared/data [--frames 30] [--rounds 3]

Trains each real dataset with the defaults that ``inspector train --no-search`` uses (in a
temporary folder), then times the station's one-pass path (``FrameAnalyser.analyse``: score, map,
Grad-CAM) one frame per call, interleaving the two ways of differentiating the search in one
process:

- ``reference``: the whole (patches x bank) distance block under autograd, as before: the
  backward pass multiplies a gradient that is zero but for one entry per patch by the whole bank;
- ``chosen rows``: ``models.components.nearest`` today: the search without autograd, and the
  gradient of the squared distance to each patch's chosen row only.

It also checks that both give the same scores (exactly) and the same Grad-CAMs (to float
round-off), and prints the median and the fastest ms per frame of each, rounds interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import models.components.nearest as nearest  # noqa: E402
from inspector.analysis import FrameAnalyser  # noqa: E402
from inspector.autoconfig import default_input_hw  # noqa: E402
from inspector.cli.common import write_json  # noqa: E402
from inspector.images import read_image  # noqa: E402
from inspector.manifest import load_manifest  # noqa: E402
from inspector.pipeline import Inspector  # noqa: E402
from inspector.training import train  # noqa: E402
from models.patchcore import PatchCoreConfig  # noqa: E402


def _whole_block_gradient(q: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The reference: the squared distances to the chosen rows read from the full product under autograd."""
    bank_sq = nearest.squared_norms(bank)
    d2 = torch.addmm(bank_sq.unsqueeze(0), q, bank.T, alpha=-2.0) + (q * q).sum(1, keepdim=True)
    chosen = d2.gather(1, idx)
    return chosen - chosen.detach()


@contextmanager
def reference_gradient() -> Iterator[None]:
    saved = nearest._chosen_rows_gradient
    nearest._chosen_rows_gradient = _whole_block_gradient
    try:
        yield
    finally:
        nearest._chosen_rows_gradient = saved


def _timed(analyser: FrameAnalyser, frames: list[np.ndarray]) -> tuple[list[float], list[Any]]:
    ms, out = [], []
    for f in frames:
        tic = time.perf_counter()
        out.append(analyser.analyse([f])[0])
        ms.append((time.perf_counter() - tic) * 1000)
    return ms, out


def bench(data: Path, name: str, n_frames: int, rounds: int) -> dict[str, Any]:
    root = data / name
    manifest = load_manifest(ROOT / "data_manifests" / f"{name}.json")
    h, w = default_input_hw(manifest, root)
    config = PatchCoreConfig() if h is None else PatchCoreConfig(input_size=h, input_width=w)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(manifest, root, Path(tmp) / "model", config=config, device="cpu")
        inspector = Inspector.load(result.model_dir, "cpu")
        analyser = FrameAnalyser.load(inspector)
        frames = [read_image(root / it.path) for it in manifest.split("test")[:n_frames]]
        analyser.analyse(frames[:1])  # warm-up
        times: dict[str, list[float]] = {"reference": [], "chosen rows": []}
        results: dict[str, list[Any]] = {}
        for _ in range(rounds):
            with reference_gradient():
                ms, results["reference"] = _timed(analyser, frames)
            times["reference"] += ms
            ms, results["chosen rows"] = _timed(analyser, frames)
            times["chosen rows"] += ms
        ref, new = results["reference"], results["chosen rows"]
        same_scores = all(a.result.score == b.result.score for a, b in zip(ref, new, strict=True))
        cam_diff = max(float(np.abs(a.gradcam - b.gradcam).max()) for a, b in zip(ref, new, strict=True))
        bank_rows = int(inspector.model.memory_bank.shape[0])
    out = {
        "input": f"{config.input_hw[0]}x{config.input_hw[1]}",
        "bank_rows": bank_rows,
        "frames": len(frames),
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "scores_identical": same_scores,
        "gradcam_max_abs_diff": cam_diff,
    }
    for key, t in times.items():
        out[key] = {"median_ms": round(statistics.median(t), 1), "fastest_ms": round(min(t), 1)}
    out["median_ratio"] = round(out["chosen rows"]["median_ms"] / out["reference"]["median_ms"], 3)
    print(
        f"{name:7s} {out['input']:>8s} bank {bank_rows:6d}  reference {out['reference']['median_ms']:6.1f} ms "
        f"(fastest {out['reference']['fastest_ms']:.1f})  chosen rows {out['chosen rows']['median_ms']:6.1f} ms "
        f"(fastest {out['chosen rows']['fastest_ms']:.1f})  ratio {out['median_ratio']:.3f}  "
        f"scores identical: {same_scores}  Grad-CAM max |diff| {cam_diff:.2e}",
        flush=True,
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--datasets", nargs="+", default=["pillqc", "crack", "ksdd"])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    report = {}
    for name in args.datasets:
        if not (args.data / name).is_dir():
            print(f"{name}: skipped, data not found at {args.data / name}")
            continue
        report[name] = bench(args.data, name, args.frames, args.rounds)
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
