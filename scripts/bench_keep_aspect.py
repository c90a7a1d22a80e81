"""Issue 11: frames of mixed aspect kept at their own aspect (same area) instead of squashed to a square.

    .venv/bin/python scripts/bench_keep_aspect.py --data ../shared/data --part choose   # training crops only
    .venv/bin/python scripts/bench_keep_aspect.py --data ../shared/data --part check    # test crops
    .venv/bin/python scripts/bench_keep_aspect.py --data ../shared/data --part train [--crops 2 4]

The held-back magnetic tiles are frames 103-632 px wide with aspects up to 2.8:1 in both
orientations. Today's rule (``inspector.autoconfig.training_input_hw``) squashes every such frame
into one square. The variant measured here resizes each frame to its own aspect, with the same
number of pixels as that square (each side a multiple of 8), so nothing is distorted; PatchCore's
patches do not need one grid for all frames (``PatchCoreConfig.keep_aspect``). ``choose`` and
``check`` measure it through ``PatchCore.fit``/``predict`` with the defaults' other settings;
``train`` through ``inspector train`` as an engineer runs it.

Proxies: ``scripts/bench_variable_aspect.py``'s variable-aspect crops of ksdd (real masks) and
crack (image labels only), seed 0.
- ``choose``: ksdd *training* crops only: fit on the crops of two thirds of the training
  commutators, score crops of the other third as they are and with one pasted synthetic defect
  each (``bench_variable_aspect.choose_part``'s split and defects). Variants: ``square`` (today's
  rule), ``aspect`` (same area, own aspect), ``aspect-small`` (own aspect, the area of 150x150).
- ``check``: every training crop fits, the test crops score (ksdd and crack), ``square`` against
  ``aspect``. Rule, written before the check ran: worth building if on ksdd's test crops image
  AUROC >= square's and pixel AUROC >= square's - 0.005, and on crack's image AUROC within 0.005.
  Outcome: met (docs/measured.md), so ``inspector train`` keeps each frame's aspect when its training frames
  are elongated both ways (``inspector.autoconfig.training_keeps_aspect``).
- ``train`` (built): ``inspector train`` with its settings search at the default budget, then
  ``inspector eval``, on the ksdd proxy with ``--crops`` training crops per commutator (2: 350
  frames; 4: 700, near the magnetic tiles' 761) and on crack's proxy: the frames' rule (own aspect)
  against ``--squash-aspect``, and anomalib's stock PatchcoreModel on the same weights, one
  after the other in one run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_bank_cut import evaluated  # noqa: E402
from bench_variable_aspect import anomalib_entry, choice_set, make_proxy  # noqa: E402

from inspector import metrics  # noqa: E402
from inspector.autoconfig import SearchOptions, default_input, default_input_hw  # noqa: E402
from inspector.evaluation import frame_masks, pixel_figures  # noqa: E402
from inspector.manifest import Manifest, build_manifest  # noqa: E402
from inspector.preprocess import model_batches, model_input_hw, to_batch  # noqa: E402
from inspector.training import load_items, train  # noqa: E402
from models.patchcore import PatchCore, PatchCoreConfig  # noqa: E402


def run(
    cfg: PatchCoreConfig, fit: list[np.ndarray], images: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Fits ``cfg`` on ``fit`` through the product's batching; returns image scores, maps and bank rows."""
    torch.manual_seed(cfg.seed)
    model = PatchCore(cfg)
    model.fit(model_batches(fit, cfg, 16))
    model.eval()
    scores, maps = [], []
    for im in images:
        p = model.predict(to_batch([im], model_input_hw(cfg, im)))
        scores.append(float(p.score.reshape(-1)[0]))
        a = p.anomaly_map.float().numpy()
        maps.append(a.reshape(a.shape[-2], a.shape[-1]))
    return np.array(scores), maps, int(model.memory_bank.shape[0])


def variants(hw: tuple[int, int], with_small: bool) -> dict[str, PatchCoreConfig]:
    square = PatchCoreConfig(input_size=hw[0], input_width=hw[1])
    out = {"square": square, "aspect": replace(square, keep_aspect=True)}
    if with_small:
        out["aspect-small"] = PatchCoreConfig(input_size=150, keep_aspect=True)  # the area of 150x150
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
    configs: dict[str, PatchCoreConfig],
    fit: list[np.ndarray],
    images: list[np.ndarray],
    labels: np.ndarray,
    masks: list[np.ndarray] | None,
) -> dict[str, Any]:
    """Each variant fitted on ``fit`` and scored on ``images``: image and pixel figures, bank, time."""
    out: dict[str, Any] = {}
    for name, cfg in configs.items():
        tic = time.perf_counter()
        scores, maps, rows = run(cfg, fit, images)
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


def train_run(manifest: Manifest, root: Path, out_dir: Path, keep: bool | None) -> dict[str, Any]:
    """``inspector train`` (search, default budget; ``keep`` None: the frames' rule) then ``inspector eval``."""
    tic = time.perf_counter()
    h, w, rule_keep = default_input(manifest, root)
    pinned = {} if keep is None else {"keep_aspect": keep}
    cfg = PatchCoreConfig(input_size=h or 112, input_width=w, keep_aspect=rule_keep if keep is None else keep)
    train(manifest, root, out_dir, config=cfg, device="cpu", search=SearchOptions(pinned=pinned))
    seconds = time.perf_counter() - tic
    insp, rep, search, chosen = evaluated(manifest, root, out_dir)
    return {
        "chosen": search["chosen"],
        "keep_aspect": insp.model.config.keep_aspect,
        "bank_rows": int(insp.model.memory_bank.shape[0]),
        "search_ms_per_frame": chosen["ms_per_frame"],
        **{k: rep[k] for k in ("image_auroc", "pixel_auroc", "aupro", "false_reject_rate", "miss_rate")},
        "train_seconds": round(seconds, 1),
    }


def train_part(data: Path, tmp: Path, crops: list[int], skip_anomalib: bool) -> dict[str, Any]:
    report: dict[str, Any] = {}
    sets: list[tuple[str, str, int | None]] = [(f"ksdd x{n}", "ksdd", n) for n in crops] + [("crack", "crack", None)]
    for label, name, n in sets:
        if not (data / name).is_dir():
            print(f"{name}: skipped, data not found at {data / name}")
            continue
        root = tmp / label.replace(" ", "_")
        manifest = make_proxy(data, name, root, 0, train_crops=n)
        for variant, keep in (("own aspect (rule)", None), ("squashed", False)):  # one after the other
            key = f"{label} {variant}"
            report[key] = train_run(manifest, root, tmp / "m" / key.replace(" ", "_"), keep)
            print(f"  {key}: {json.dumps(report[key])}", flush=True)
        if not skip_anomalib:
            a = anomalib_entry(manifest, root)
            report[f"{label} anomalib"] = a
            print(f"  {label} anomalib: {json.dumps(a)}", flush=True)
    return report


def print_train(report: dict[str, Any]) -> None:
    def f(v: Any, pct: bool = False) -> str:
        return "-" if v is None else (f"{v:.1%}" if pct else f"{v:.4f}")

    print(f"\n{'run':<30} {'chosen':<60} {'img':>7} {'px':>7} {'AUPRO':>7} {'FRR':>6} {'miss':>6} {'ms':>6} {'s':>6}")
    for key, r in report.items():
        if "skipped" in r:
            print(f"{key:<30} skipped: {r['skipped']}")
            continue
        print(
            f"{key:<30} {r.get('chosen', 'stock 224x224'):<60} {f(r['image_auroc']):>7} {f(r['pixel_auroc']):>7}"
            f" {f(r['aupro']):>7} {f(r['false_reject_rate'], True):>6} {f(r['miss_rate'], True):>6}"
            f" {r.get('search_ms_per_frame') or 0:>6.1f} {r['train_seconds']:>6.1f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--part", choices=("choose", "check", "train"), required=True)
    ap.add_argument("--crops", nargs="+", type=int, default=[2, 4], help="ksdd training crops per commutator (train)")
    ap.add_argument("--skip-anomalib", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="keep_aspect_"))
    try:
        if args.part == "train":
            report = train_part(args.data, tmp, args.crops, args.skip_anomalib)
            print_train(report)
        else:
            report = proxy_parts(args.data, tmp, args.part)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


def proxy_parts(data: Path, tmp: Path, part_name: str) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name in ("ksdd",) if part_name == "choose" else ("ksdd", "crack"):
        if not (data / name).is_dir():
            print(f"{name}: skipped, data not found at {data / name}")
            continue
        make_proxy(data, name, tmp / name, 0)
        manifest = build_manifest(tmp / name, "mvtec", name=f"{name}-variable-aspect")
        part = choose_part if part_name == "choose" else check_part
        report[name] = part(manifest, tmp / name)
    print(f"\n{'set':<8} {'input':<10} {'variant':<13} {'img AUROC':>9} {'px AUROC':>9} {'AUPRO':>7} {'bank':>7}")
    for name, res in report.items():
        for v in ("square", "aspect", "aspect-small"):
            if v in res:
                r = res[v]
                px = "-" if r["pixel_auroc"] is None else f"{r['pixel_auroc']:.4f}"
                pro = "-" if r["aupro"] is None else f"{r['aupro']:.4f}"
                hw = "x".join(map(str, res["input_hw"]))
                print(f"{name:<8} {hw:<10} {v:<13} {r['image_auroc']:>9.4f} {px:>9} {pro:>7} {r['bank_rows']:>7}")
    return report


if __name__ == "__main__":
    raise SystemExit(main())
