"""Issue 11's figures: settings chosen per product from good images only, against anomalib's stock PatchCore.

    .venv/bin/python scripts/bench_generalise.py [--data ../shared/data] [--datasets pillqc crack ksdd]
        [--json runs/bench_generalise.json] [--skip-lodo] [--skip-side]

Two parts, on every dataset found:

(a) Does the synthetic-defect criterion rank configurations the way real defects do? A fixed list
    of candidates is scored (1) by the search's criterion, on good *training* images with pasted
    defects, exactly as ``inspector train`` does, and (2) on the real test defects, after fitting
    on training images. It prints Spearman's rank correlation per dataset, and the
    leave-one-dataset-out transfer: the candidate chosen with real defects of dataset A, applied
    to dataset B, against the one the criterion chooses on B's own good images. No choice ever
    looks at B's test split.

(b) Side by side in one run, on the same efficientnet-lite0 weights: ``inspector train`` with the
    automatic choice, ``inspector train --no-search`` (today's defaults), and anomalib 2.7's
    ``PatchcoreModel`` with its stock settings (blocks.2+blocks.4, 224 px, 10% coreset). Image
    AUROC, pixel AUROC and AUPRO (real masks on ksdd; on pillQC and crack, their good *test*
    images with pasted defects, another seed), Grad-CAM's pooled pixel AUROC, and the stored
    threshold's false-reject and miss rates. anomalib's own greedy coreset runs at a few steps
    per second on these patch counts (hours), so its memory bank is the greedy coreset of the
    same embeddings (same ratio) computed by inspector's implementation; anomalib's code does all
    the scoring and maps. anomalib has no stored threshold of its own: it gets the same
    good-only calibration on the same held-out good images as inspector.

Timings come from a shared CPU (other jobs running); the training-time ratio is measured in the
same process, the two runs back to back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector import metrics  # noqa: E402
from inspector.autoconfig import Candidate, CandidateScorer, SearchOptions, format_table, input_sizes  # noqa: E402
from inspector.calibration import calibrate_good_only  # noqa: E402
from inspector.evaluation import _load_masks, eval_grid, evaluate, to_grid  # noqa: E402
from inspector.manifest import load_manifest, require_training_items  # noqa: E402
from inspector.pipeline import Inspector  # noqa: E402
from inspector.preprocess import to_batch  # noqa: E402
from inspector.synthetic_defects import defective_set  # noqa: E402
from inspector.training import load_items, split_holdout, train  # noqa: E402
from models.patchcore import PatchCore, PatchCoreConfig  # noqa: E402

TARGETS = {"pillqc": 0.997, "crack": 0.998}
STOCK = PatchCoreConfig(
    layers=("blocks.2", "blocks.4"), input_size=224, feature_stride=None, fine_pool="avg", standardize=False
)


def lodo_candidates(frame_hw: tuple[int, int]) -> dict[str, Candidate]:
    """The same named list on every dataset; "aspect" is the frame's aspect at 112 px across."""
    sizes = input_sizes(frame_hw)
    aspect = sizes[-1]
    p23, lite0 = ("pixels", "blocks.2", "blocks.3"), "efficientnet_lite0"
    return {
        "default 112": Candidate(lite0, p23, (112, 112)),
        "aspect": Candidate(lite0, p23, aspect),
        "160": Candidate(lite0, p23, (160, 160)),
        "b2+b3": Candidate(lite0, ("blocks.2", "blocks.3"), aspect),
        "b2+b4": Candidate(lite0, ("blocks.2", "blocks.4"), aspect),
        "stride 4": Candidate(lite0, ("pixels", "blocks.1", "blocks.2"), aspect, 4),
        "lite1": Candidate("efficientnet_lite1", p23, aspect),
        "lite2": Candidate("efficientnet_lite2", p23, aspect),
        "coreset 0.25": Candidate(lite0, p23, aspect, 8, 0.25),
    }


class Dataset:
    def __init__(self, name: str, root: Path, lodo_test: int) -> None:
        self.name, self.root = name, root
        self.manifest = load_manifest(ROOT / "data_manifests" / f"{name}.json")
        good = require_training_items(self.manifest)
        self.fit_items, self.hold_items = split_holdout(good, 0.1, 0)
        test = self.manifest.split("test")
        self.test_items = test
        self.test = load_items(test, root)
        self.labels = np.array([it.is_anomalous for it in test], int)
        self.grid = eval_grid(self.test[0].shape)
        self.masks = _load_masks(test, root, self.grid)
        # Masked set for pixel figures where the data has no masks: good test images, each with
        # one pasted defect (a different seed from the search's), donors from the training images.
        good_test = [im for im, lab in zip(self.test, self.labels, strict=True) if lab == 0][:60]
        donors = load_items(self.fit_items[:20], root)
        bad, masks, _ = defective_set(good_test, donors, 1, seed=1234)
        self.syn = [*good_test, *bad]
        empty = np.zeros(good_test[0].shape[:2], np.uint8)
        self.syn_masks = np.stack([to_grid(m, self.grid) > 127 for m in [empty] * len(good_test) + masks])
        rng = np.random.default_rng(0)
        self.lodo_idx = (
            np.sort(rng.permutation(len(test))[:lodo_test]) if lodo_test < len(test) else np.arange(len(test))
        )


def _maps_scores(predict: Any, images: list[np.ndarray], hw: tuple[int, int], grid: tuple[int, int]) -> tuple:
    scores, maps = [], []
    for i in range(0, len(images), 16):
        s, m = predict(to_batch(images[i : i + 16], hw))
        scores.append(np.asarray(s, np.float64).reshape(-1))
        for im, a in zip(images[i : i + 16], m, strict=True):
            a = np.asarray(a, np.float32).reshape(a.shape[-2], a.shape[-1])
            full = cv2.resize(a, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR)
            maps.append(to_grid(full, grid))
    return np.concatenate(scores), np.stack(maps)


def _pixel(maps: np.ndarray, masks: np.ndarray | None) -> dict[str, float | None]:
    if masks is None:
        return {"pixel_auroc": None, "aupro": None}
    return {"pixel_auroc": metrics.pixel_auroc(maps, masks), "aupro": metrics.aupro(maps, masks)}


def _fit(cfg: PatchCoreConfig, images: list[np.ndarray]) -> PatchCore:
    torch.manual_seed(cfg.seed)
    model = PatchCore(cfg)
    model.fit(to_batch(images[i : i + 16], cfg.input_hw) for i in range(0, len(images), 16))
    return model


def _torch_predict(model: PatchCore) -> Any:
    def run(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        p = model.predict(x)
        return p.score.float().numpy(), p.anomaly_map.float().numpy()

    return run


def lodo_part(ds: Dataset, n_fit: int) -> dict[str, Any]:
    """Criterion (good training images + synthetic defects) and real test figures per candidate."""
    sample = load_items(ds.fit_items[: SearchOptions().sample_size()], ds.root)
    fit_images = load_items(ds.fit_items[:n_fit], ds.root)
    cands = lodo_candidates(sample[0].shape[:2])
    scorer = CandidateScorer(sample, PatchCoreConfig(), n_final=len(ds.fit_items), allow_over_budget=True)
    test = [ds.test[i] for i in ds.lodo_idx]
    labels = ds.labels[ds.lodo_idx]
    masks = ds.masks[ds.lodo_idx] if ds.masks is not None else None
    rows: dict[str, Any] = {}
    seen: dict[Candidate, dict[str, Any]] = {}
    for label, cand in cands.items():
        if cand in seen:
            rows[label] = {**seen[cand], "same_as": next(k for k, v in cands.items() if v == cand)}
            continue
        tic = time.perf_counter()
        s = scorer.score([cand])[0]
        model = _fit(cand.config(PatchCoreConfig()), fit_images)
        scores, maps = _maps_scores(_torch_predict(model), test, cand.input_hw, ds.grid)
        row = {
            "candidate": cand.name,
            "criterion": s.criterion,
            "synthetic_image_auroc": s.image_auroc,
            "synthetic_pixel_auroc": s.pixel_auroc,
            "synthetic_aupro": s.aupro,
            "ms_per_frame": s.ms_per_frame,
            "within_budget": s.within_budget,
            "real_image_auroc": metrics.image_auroc(scores, labels),
            **{f"real_{k}": v for k, v in _pixel(maps, masks).items()},
            "seconds": round(time.perf_counter() - tic, 1),
        }
        seen[cand] = rows[label] = row
        print(
            f"  {ds.name:<7} {label:<13} criterion {row['criterion']:.4f}  real image AUROC "
            f"{row['real_image_auroc']:.4f}  {row['ms_per_frame']:.1f} ms",
            flush=True,
        )
    return rows


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return None
    r = spearmanr(a, b).statistic
    return None if np.isnan(r) else float(r)


def lodo_summary(lodo: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"spearman": {}, "transfer": []}
    for name, rows in lodo.items():
        uniq = [r for r in rows.values() if "same_as" not in r]
        out["spearman"][name] = {
            "criterion_vs_real_image_auroc": spearman(
                [r["criterion"] for r in uniq], [r["real_image_auroc"] for r in uniq]
            ),
        }
        if uniq and uniq[0].get("real_pixel_auroc") is not None:
            out["spearman"][name]["criterion_vs_real_pixel_auroc"] = spearman(
                [r["criterion"] for r in uniq], [r["real_pixel_auroc"] for r in uniq]
            )
    for a, rows_a in lodo.items():
        chosen_on_a = max(rows_a, key=lambda k: rows_a[k]["real_image_auroc"])
        for b, rows_b in lodo.items():
            if a == b:
                continue
            ok = {k: r for k, r in rows_b.items() if r["within_budget"]}
            synthetic_pick = max(ok or rows_b, key=lambda k: (ok or rows_b)[k]["criterion"])
            out["transfer"].append(
                {
                    "choose_on": a,
                    "test_on": b,
                    "chosen_with_real_defects_of_A": chosen_on_a,
                    "its_auroc_on_B": rows_b[chosen_on_a]["real_image_auroc"],
                    "chosen_by_criterion_on_B_good_images": synthetic_pick,
                    "its_auroc_on_B_": rows_b[synthetic_pick]["real_image_auroc"],
                    "defaults_auroc_on_B": rows_b["default 112"]["real_image_auroc"],
                    "best_possible_on_B": max(r["real_image_auroc"] for r in rows_b.values()),
                }
            )
    return out


def side_part(ds: Dataset, out_dir: Path, budget_ms: float) -> dict[str, Any]:
    res: dict[str, Any] = {}
    tic = time.perf_counter()
    train(ds.manifest, ds.root, out_dir / "defaults", device="cpu")
    t_def = time.perf_counter() - tic
    tic = time.perf_counter()
    opts = SearchOptions(budget_ms=budget_ms, allow_over_budget=False)
    r_auto = train(ds.manifest, ds.root, out_dir / "auto", device="cpu", search=opts)
    t_auto = time.perf_counter() - tic
    assert r_auto.selection is not None
    print(format_table(r_auto.selection.to_json()), flush=True)
    res["train_seconds"] = {"defaults": round(t_def, 1), "auto": round(t_auto, 1), "ratio": round(t_auto / t_def, 2)}
    res["search"] = r_auto.selection.to_json()
    for key, model_dir in (("auto", out_dir / "auto"), ("defaults", out_dir / "defaults")):
        insp = Inspector.load(model_dir, "cpu")
        rep = evaluate(insp, ds.manifest, ds.root, gradcam=ds.masks is not None).report
        entry = {
            k: rep[k]
            for k in (
                "image_auroc",
                "per_defect",
                "pixel_auroc",
                "aupro",
                "gradcam_pixel_auroc",
                "false_reject_rate",
                "miss_rate",
                "threshold",
            )
        }
        entry["config"] = insp.model.config.to_json()
        hw = insp.model.config.input_hw
        _, maps = _maps_scores(_torch_predict(insp.model), ds.syn, hw, ds.grid)
        entry["synthetic_test"] = _pixel(maps, ds.syn_masks)
        if key == "auto":
            entry["synthetic_test"]["gradcam_pixel_auroc"] = _gradcam_pixel(insp, ds.syn, ds.syn_masks, ds.grid)
        res[key] = entry
        print(f"  {ds.name} {key}: {json.dumps({k: v for k, v in entry.items() if k != 'config'})}", flush=True)
    res["anomalib"] = anomalib_entry(ds)
    print(f"  {ds.name} anomalib: {json.dumps(res['anomalib'])}", flush=True)
    return res


def _gradcam_pixel(insp: Inspector, images: list[np.ndarray], masks: np.ndarray, grid: tuple[int, int]) -> float | None:
    from inspector.explain import Explainer

    ex = Explainer(insp)
    cams = np.stack([to_grid(ex.explain(im, ("gradcam",)).maps["gradcam"], grid) for im in images])
    return metrics.pixel_auroc(cams, masks)


def anomalib_entry(ds: Dataset) -> dict[str, Any]:
    from inspector.bench_reference import anomalib_version, build_reference, reference_predict
    from models.backbones import build_body

    fit_images = load_items(ds.fit_items, ds.root)
    tic = time.perf_counter()
    ours_stock = _fit(STOCK, fit_images)  # the coreset of the same embeddings (see the module docstring)
    body = build_body(STOCK.backbone)
    ref = build_reference(STOCK.backbone, STOCK.layers, body, STOCK.num_neighbours)
    ref.memory_bank = ours_stock.memory_bank.clone()
    fit_s = time.perf_counter() - tic

    def predict(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        s, m = reference_predict(ref, ours_stock.normalize(x))
        return s.float().numpy(), m.float().numpy()

    hw = STOCK.input_hw
    scores, maps = _maps_scores(predict, ds.test, hw, ds.grid)
    hold_scores, _ = _maps_scores(predict, load_items(ds.hold_items, ds.root), hw, ds.grid)
    thr = calibrate_good_only(hold_scores).decision
    frr, miss = metrics.rates_at(scores, ds.labels, thr)
    _, syn_maps = _maps_scores(predict, ds.syn, hw, ds.grid)
    return {
        "version": anomalib_version(),
        "image_auroc": metrics.image_auroc(scores, ds.labels),
        "per_defect": metrics.per_defect_auroc(scores, ds.labels, [it.defect for it in ds.test_items]),
        **_pixel(maps, ds.masks),
        "false_reject_rate": frr,
        "miss_rate": miss,
        "synthetic_test": _pixel(syn_maps, ds.syn_masks),
        "bank": "greedy coreset (10%) of the same embeddings by inspector's implementation",
        "fit_seconds": round(fit_s, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--datasets", nargs="+", default=["pillqc", "crack", "ksdd"])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_generalise")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--lodo-fit", type=int, default=100, help="training images per candidate in part (a)")
    ap.add_argument("--lodo-test", type=int, default=200, help="test images per dataset in part (a)")
    ap.add_argument("--skip-lodo", action="store_true")
    ap.add_argument("--budget-ms", type=float, default=33.0, help="the search's per-frame budget (train --budget-ms)")
    ap.add_argument("--skip-side", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    report: dict[str, Any] = {"lodo": {}, "side_by_side": {}}
    for name in args.datasets:
        root = args.data / name
        if not root.is_dir():
            print(f"{name}: skipped, data not found at {root}")
            continue
        ds = Dataset(name, root, args.lodo_test)
        if not args.skip_lodo:
            report["lodo"][name] = lodo_part(ds, args.lodo_fit)
        if not args.skip_side:
            report["side_by_side"][name] = side_part(ds, args.out / name, args.budget_ms)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2, default=str))
    if report["lodo"]:
        report["lodo_summary"] = lodo_summary(report["lodo"])
        print(json.dumps(report["lodo_summary"], indent=1))
    print_side(report["side_by_side"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


def print_side(side: dict[str, Any]) -> None:
    def f(v: Any) -> str:
        return "  -   " if v is None else f"{v:.4f}"

    print(
        f"\n{'dataset':<7} {'model':<9} {'img AUROC':>9} {'px AUROC':>9} {'AUPRO':>7} {'syn px':>7} "
        f"{'syn PRO':>7} {'FRR':>6} {'miss':>6}  target"
    )
    for name, r in side.items():
        for key in ("auto", "defaults", "anomalib"):
            e = r[key]
            target = ""
            if key == "auto":
                need = TARGETS.get(name)
                ref = r["anomalib"]
                ok = e["image_auroc"] >= (need or ref["image_auroc"])
                if e["pixel_auroc"] is not None and ref["pixel_auroc"] is not None:
                    ok = ok and e["pixel_auroc"] >= ref["pixel_auroc"]
                target = ("met" if ok else "NOT met") + (f" (>= {need})" if need else " (>= anomalib)")
            print(
                f"{name:<7} {key:<9} {f(e['image_auroc']):>9} {f(e['pixel_auroc']):>9} {f(e['aupro']):>7} "
                f"{f(e['synthetic_test']['pixel_auroc']):>7} {f(e['synthetic_test']['aupro']):>7} "
                f"{f(e['false_reject_rate']):>6} {f(e['miss_rate']):>6}  {target}"
            )
        t = r["train_seconds"]
        print(f"{name:<7} training {t['defaults']} s with the defaults, {t['auto']} s with the search (x{t['ratio']})")


if __name__ == "__main__":
    raise SystemExit(main())
