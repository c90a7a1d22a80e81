"""Issue 11: frames of mixed aspect kept at their own aspect (same area) instead of squashed to a square.

    .venv/bin/python scripts/bench_keep_aspect.py --data ../shared/data --part choose   # training crops only
    .venv/bin/python scripts/bench_keep_aspect.py --data ../shared/data --part check    # test crops

The held-back magnetic tiles are frames 103-632 px wide with aspects up to 2.8:1 in both
orientations. Today's rule (``inspector.autoconfig.training_input_hw``) squashes every such frame
into one square. The variant measured here resizes each frame to its own aspect, with the same
number of pixels as that square (each side a multiple of 8), so nothing is distorted; PatchCore's
patches do not need one grid for all frames. This is a measurement of the idea through
``PatchCore.fit``/``predict`` directly, one frame per batch; ``inspector train`` does not build
such models yet.

Proxies: ``scripts/bench_variable_aspect.py``'s variable-aspect crops of ksdd (real masks) and
crack (image labels only), seed 0.
- ``choose``: ksdd *training* crops only: fit on the crops of two thirds of the training
  commutators, score crops of the other third as they are and with one pasted synthetic defect
  each (``bench_variable_aspect.choose_part``'s split and defects). Variants: ``square`` (today's
  rule), ``aspect`` (same area, own aspect), ``aspect-small`` (own aspect, the area of 150x150).
- ``check``: every training crop fits, the test crops score (ksdd and crack), ``square`` against
  ``aspect``. Rule, written before the check ran: worth building if on ksdd's test crops image
  AUROC >= square's and pixel AUROC >= square's - 0.005, and on crack's image AUROC within 0.005.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_variable_aspect import choice_set, make_proxy  # noqa: E402

from inspector import metrics  # noqa: E402
from inspector.autoconfig import _round8, default_input_hw  # noqa: E402
from inspector.evaluation import frame_masks, pixel_figures  # noqa: E402
from inspector.manifest import Manifest, build_manifest  # noqa: E402
from inspector.preprocess import to_batch  # noqa: E402
from inspector.training import load_items  # noqa: E402
from models.patchcore import PatchCore, PatchCoreConfig  # noqa: E402

Sizer = Callable[[np.ndarray], tuple[int, int]]


def own_aspect(area: int) -> Sizer:
    """Each frame at its own aspect with about ``area`` pixels, sides multiples of 8."""

    def size(im: np.ndarray) -> tuple[int, int]:
        h, w = im.shape[:2]
        k = math.sqrt(area / (h * w))
        return _round8(h * k), _round8(w * k)

    return size


def run(
    hw: tuple[int, int], sizer: Sizer | None, fit: list[np.ndarray], images: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Fits the defaults on ``fit``; returns image scores, anomaly maps and the bank's rows."""
    cfg = PatchCoreConfig(input_size=hw[0], input_width=hw[1])
    torch.manual_seed(cfg.seed)
    model = PatchCore(cfg)
    if sizer is None:
        model.fit(to_batch(fit[i : i + 16], hw) for i in range(0, len(fit), 16))
    else:
        model.fit(to_batch([im], sizer(im)) for im in fit)
    model.eval()
    scores, maps = [], []
    for im in images:
        p = model.predict(to_batch([im], sizer(im) if sizer else hw))
        scores.append(float(p.score.reshape(-1)[0]))
        a = p.anomaly_map.float().numpy()
        maps.append(a.reshape(a.shape[-2], a.shape[-1]))
    return np.array(scores), maps, int(model.memory_bank.shape[0])


def variants(hw: tuple[int, int], with_small: bool) -> dict[str, Sizer | None]:
    out: dict[str, Sizer | None] = {"square": None, "aspect": own_aspect(hw[0] * hw[1])}
    if with_small:
        out["aspect-small"] = own_aspect(150 * 150)
    return out


def choose_part(manifest: Manifest, root: Path, seed: int = 0) -> dict[str, Any]:
    fit, good, images, labels, masks = choice_set(manifest, root, seed)
    h, w = default_input_hw(manifest, root)
    hw = (h or 112, w or 112)
    out = {"input_hw": list(hw), "n_fit": len(fit), "n_good": len(good), "n_defect": len(images) - len(good)}
    return out | measure("choose", hw, variants(hw, with_small=True), fit, images, labels, masks)


def measure(
    part: str,
    hw: tuple[int, int],
    sizers: dict[str, Sizer | None],
    fit: list[np.ndarray],
    images: list[np.ndarray],
    labels: np.ndarray,
    masks: list[np.ndarray] | None,
) -> dict[str, Any]:
    """Each variant fitted on ``fit`` and scored on ``images``: image and pixel figures, bank, time."""
    out: dict[str, Any] = {}
    for name, sizer in sizers.items():
        tic = time.perf_counter()
        scores, maps, rows = run(hw, sizer, fit, images)
        out[name] = {
            "image_auroc": metrics.image_auroc(scores, labels),
            **pixel_figures(maps, masks),
            "bank_rows": rows,
            "seconds": round(time.perf_counter() - tic, 1),
        }
        print(f"  {part} {name}: {json.dumps(out[name])}", flush=True)
    return out


def check_part(manifest: Manifest, root: Path) -> dict[str, Any]:
    fit = load_items(manifest.split("train"), root)
    test_items = manifest.split("test")
    test = load_items(test_items, root)
    labels = np.array([it.is_anomalous for it in test_items], int)
    masks = frame_masks(test_items, root, [im.shape[:2] for im in test])
    h, w = default_input_hw(manifest, root)
    hw = (h or 112, w or 112)
    out: dict[str, Any] = {"input_hw": list(hw), "n_fit": len(fit), "n_test": len(test)}
    return out | measure("check", hw, variants(hw, with_small=False), fit, test, labels, masks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--part", choices=("choose", "check"), required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="keep_aspect_"))
    try:
        for name in ("ksdd",) if args.part == "choose" else ("ksdd", "crack"):
            if not (args.data / name).is_dir():
                print(f"{name}: skipped, data not found at {args.data / name}")
                continue
            make_proxy(args.data, name, tmp / name, 0)
            manifest = build_manifest(tmp / name, "mvtec", name=f"{name}-variable-aspect")
            part = choose_part if args.part == "choose" else check_part
            report[name] = part(manifest, tmp / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'set':<8} {'input':<10} {'variant':<13} {'img AUROC':>9} {'px AUROC':>9} {'AUPRO':>7} {'bank':>7}")
    for name, res in report.items():
        for v in ("square", "aspect", "aspect-small"):
            if v in res:
                r = res[v]
                px = "-" if r["pixel_auroc"] is None else f"{r['pixel_auroc']:.4f}"
                pro = "-" if r["aupro"] is None else f"{r['aupro']:.4f}"
                hw = "x".join(map(str, res["input_hw"]))
                print(f"{name:<8} {hw:<10} {v:<13} {r['image_auroc']:>9.4f} {px:>9} {pro:>7} {r['bank_rows']:>7}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
