"""Issue 11, sharper maps: the coarse default, the fine map and their blend, against anomalib, in one run.

    .venv/bin/python scripts/bench_maps.py [--data ../shared/data] [--datasets ksdd crack pillqc]
        [--json runs/bench_maps.json] [--frames 20] [--skip-anomalib]

Per dataset, side by side, trained as ``inspector train`` does with settings given (elongated
frames keep their aspect):
- "old": the coarse map (the default: the score's 14x14 grid at 112 px, sigma 4);
- "fine": the fine map alone (what ``train --fine-map`` set before the blend: a second, small bank
  of stride-4 stages queried every 4 px, sigma 2). It lost on ksdd's real masks;
- "blend": the mean of the two, coarse at sigma 4 and fine at sigma 2 (``map_blend="mean"``), the
  fine grid searched only under the frame's highest fifth of coarse scores (``map_focus=0.2``,
  ``PatchCoreConfig``'s defaults: what ``train`` sets now),
  chosen by ``scripts/choose_map_blend.py`` on pasted defects on crack and pillQC *training*
  images (exact and widened masks), never on these test images. "fine" is "blend"'s own model
  and bank with the fine map alone, so it costs no second fit; "every cell" is the blend with
  the whole fine grid searched (``map_focus=None``, what ``--fine-map`` gave before the focus);
- anomalib 2.7's stock ``PatchcoreModel`` (blocks.2+blocks.4, 224 px), as in
  ``scripts/bench_generalise.py`` (same weights, same good images; its bank is the same coreset).
The image score is computed the same way by all three of ours: the map never feeds it.

Figures: image AUROC on the real test split; pixel AUROC and AUPRO on real masks (ksdd) and on
good *test* images with one pasted defect each (pillQC, crack, ksdd; seed 1234, the same set as
bench_generalise); Grad-CAM's pooled pixel AUROC (the same for all three: the score path is
unchanged); ms per frame for score + map + Grad-CAM in one pass (``FrameAnalyser``, one frame at
a time, the station's path), old and blend interleaved in the same process; training seconds
(with ``--train-repeats N``, the median of N fits of each, interleaved).

Acceptance rule for making "blend" the default map, stated before this check was run:
ksdd real masks: pixel AUROC >= old's - 0.003 and AUPRO >= old's - 0.01; crack and pillQC
pasted test defects: pixel AUROC and AUPRO both above old's; ms per frame with Grad-CAM and
training seconds at most x1.6 of old's; image AUROC equal to old's. ``--json`` holds each
criterion's outcome under "acceptance".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
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

from inspector.analysis import FrameAnalyser  # noqa: E402
from inspector.autoconfig import default_input_hw  # noqa: E402
from inspector.evaluation import evaluate  # noqa: E402
from inspector.pipeline import Inspector  # noqa: E402
from inspector.training import train  # noqa: E402
from models.patchcore import PatchCoreConfig  # noqa: E402


def _generalise() -> Any:
    spec = importlib.util.spec_from_file_location("bench_generalise", ROOT / "scripts" / "bench_generalise.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ms_per_frame(analysers: dict[str, FrameAnalyser], frames: list[np.ndarray]) -> dict[str, float]:
    """Median ms per frame of score + map + Grad-CAM, one frame per call, models interleaved."""
    times: dict[str, list[float]] = {k: [] for k in analysers}
    for a in analysers.values():
        a.analyse(frames[:1])  # warm-up
    for f in frames:
        for k, a in analysers.items():
            t = time.perf_counter()
            a.analyse([f])
            times[k].append((time.perf_counter() - t) * 1000)
    return {k: round(float(np.median(v)), 2) for k, v in times.items()}


def run_dataset(
    g: Any, name: str, root: Path, out: Path, n_frames: int, anomalib: bool, train_repeats: int = 1
) -> dict[str, Any]:
    ds = g.Dataset(name, root, 10**9)
    h, w = default_input_hw(ds.manifest, root)
    base = dict(input_size=h or 112, input_width=w)
    res: dict[str, Any] = {"input_hw": [base["input_size"], w or base["input_size"]]}
    models = {}
    coarse = PatchCoreConfig(**{**base, "map_layers": None})  # the default map
    blended = PatchCoreConfig(**base)  # the default map: the focused blend
    seconds: dict[str, list[float]] = {"old": [], "blend": []}
    for _ in range(max(1, train_repeats)):  # interleaved, so a change of load hits both alike
        for key, cfg in (("old", coarse), ("blend", blended)):
            tic = time.perf_counter()
            train(ds.manifest, root, out / key, config=cfg, device="cpu")
            seconds[key].append(round(time.perf_counter() - tic, 1))
    res["train_seconds"] = {k: float(np.median(v)) for k, v in seconds.items()}
    res["train_seconds_each"] = seconds
    for key in seconds:
        models[key] = Inspector.load(out / key, "cpu")
    # The fine map alone (train --fine-map): the blend's own model and bank, its map only changed.
    models["fine"] = Inspector.load(out / "blend", "cpu")
    models["fine"].model.config = replace(models["fine"].model.config, map_blend="fine", sigma=2.0, map_focus=None)
    models["every cell"] = Inspector.load(out / "blend", "cpu")
    models["every cell"].model.config = replace(models["every cell"].model.config, map_focus=None)
    for key, insp in models.items():
        rep = evaluate(insp, ds.manifest, root, gradcam=ds.masks is not None and key == "blend").report
        _, maps = g._maps_scores(g._torch_predict(insp.model), ds.syn, insp.model.config.input_hw, ds.grid)
        entry = {k: rep[k] for k in ("image_auroc", "pixel_auroc", "aupro", "gradcam_pixel_auroc")}
        entry["synthetic_test"] = g._pixel(maps, ds.syn_masks)
        if key == "blend":
            entry["synthetic_test"]["gradcam_pixel_auroc"] = g._gradcam_pixel(insp, ds.syn, ds.syn_masks, ds.grid)
        res[key] = entry
        print(f"  {name} {key}: {json.dumps(entry)}", flush=True)
    frames = [im for im, lab in zip(ds.test, ds.labels, strict=True) if lab == 1][:n_frames]
    ms = ms_per_frame({k: FrameAnalyser(models[k]) for k in ("old", "blend")}, frames)
    for k, v in ms.items():
        res[k]["ms_per_frame_with_gradcam"] = v
    print(f"  {name} ms per frame with Grad-CAM: {ms}", flush=True)
    if anomalib:
        res["anomalib"] = g.anomalib_entry(ds)
        print(f"  {name} anomalib: {json.dumps(res['anomalib'])}", flush=True)
    return res


def acceptance(report: dict[str, Any]) -> dict[str, bool]:
    """The pre-stated rule (module docstring), criterion by criterion, on the datasets present."""
    out: dict[str, bool] = {}
    for name, r in report.items():
        old, new = r["old"], r["blend"]
        out[f"{name} image AUROC unchanged"] = abs(new["image_auroc"] - old["image_auroc"]) < 1e-9
        if old["pixel_auroc"] is not None:  # real masks
            out[f"{name} real pixel AUROC >= old - 0.003"] = new["pixel_auroc"] >= old["pixel_auroc"] - 0.003
            out[f"{name} real AUPRO >= old - 0.01"] = new["aupro"] >= old["aupro"] - 0.01
        if name in ("crack", "pillqc"):
            so, sn = old["synthetic_test"], new["synthetic_test"]
            out[f"{name} pasted pixel AUROC above old"] = sn["pixel_auroc"] > so["pixel_auroc"]
            out[f"{name} pasted AUPRO above old"] = sn["aupro"] > so["aupro"]
        ms_o, ms_n = old["ms_per_frame_with_gradcam"], new["ms_per_frame_with_gradcam"]
        out[f"{name} ms per frame <= x1.6"] = ms_n <= 1.6 * ms_o
        out[f"{name} training <= x1.6"] = r["train_seconds"]["blend"] <= 1.6 * r["train_seconds"]["old"]
    return out


def print_table(report: dict[str, Any]) -> None:
    def f(v: Any) -> str:
        return "  -   " if v is None else f"{v:.4f}"

    print(
        f"\n{'dataset':<7} {'model':<10} {'img AUROC':>9} {'px AUROC':>9} {'AUPRO':>7} {'syn px':>7} "
        f"{'syn PRO':>7} {'CAM px':>7} {'ms/frame':>8}"
    )
    for name, r in report.items():
        for key in ("old", "fine", "every cell", "blend", "anomalib"):
            e = r.get(key)
            if e is None:
                continue
            syn = e["synthetic_test"]
            cam = e.get("gradcam_pixel_auroc") or syn.get("gradcam_pixel_auroc")
            ms = e.get("ms_per_frame_with_gradcam")
            print(
                f"{name:<7} {key:<10} {f(e['image_auroc']):>9} {f(e['pixel_auroc']):>9} {f(e['aupro']):>7} "
                f"{f(syn['pixel_auroc']):>7} {f(syn['aupro']):>7} {f(cam):>7} {'' if ms is None else ms:>8}"
            )
        t = r["train_seconds"]
        print(f"{name:<7} training {t['old']} s old, {t['blend']} s blend (x{t['blend'] / t['old']:.2f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--datasets", nargs="+", default=["ksdd", "crack", "pillqc"])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=20, help="frames timed per model")
    ap.add_argument("--skip-anomalib", action="store_true")
    ap.add_argument(
        "--train-repeats", type=int, default=1, help="fits per model, interleaved; training seconds are their median"
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    g = _generalise()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_maps_") as tmp:
        for name in args.datasets:
            root = args.data / name
            if not root.is_dir():
                print(f"{name}: skipped, data not found at {root}")
                continue
            report[name] = run_dataset(
                g, name, root, Path(tmp) / name, args.frames, not args.skip_anomalib, args.train_repeats
            )
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                doc = {**report, "acceptance": acceptance(report)}
                args.json.write_text(json.dumps(doc, indent=2, default=str))
    print_table(report)
    verdict = acceptance(report)
    print("\nacceptance (blend as the default map):")
    for k, ok in verdict.items():
        print(f"  {'pass' if ok else 'FAIL'}  {k}")
    print(f"  -> {'all pass' if all(verdict.values()) else 'not accepted'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
