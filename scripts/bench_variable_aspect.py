"""Issue 11: a product whose frames vary in size and aspect, end to end, against anomalib's stock PatchCore.

    .venv/bin/python scripts/bench_variable_aspect.py [--data ../shared/data] [--datasets crack ksdd]
        [--rules median first portrait landscape letterbox] [--json runs/bench_variable_aspect.json]

The team's held-back magnetic tiles are grayscale frames 103-632 px wide whose aspect ratio
varies per image up to 2.8:1. This script makes an honest proxy of such a product from real data
and runs it as a new user would: the images are written in MVTec layout to a temporary folder,
the manifest comes from ``build_manifest(layout="mvtec")`` (what ``inspector data manifest
--layout mvtec`` calls), the model is trained as ``inspector train`` trains it without
``--search`` (input size from ``default_input_hw``) and evaluated as ``inspector eval`` does.

The proxy (seeded): every frame is a random crop, with an aspect ratio between 1:1 and 2.8:1
(log-uniform, portrait or landscape at random), resized so that its sides lie between 100 and
630 px (small crops are upsampled), saved as 8-bit grey PNG.
- ksdd: two crops of each good *training* commutator train; one crop of each good *test* image
  and two of each defective test image (each holding at least half of its defect's mask, the mask
  cropped alike) test. Real masks.
- crack: one crop of each good training tile (negative 00001-00400) trains; one crop of each
  test tile (negative 00401-00600, positive 00001-00200) tests. No masks: a crop may miss the
  crack, so every crack crop (good or not, training or test, the same procedure) is the one of
  six random crops of one drawn shape that holds most of the darkest 1% of the tile's pixels.
  Image AUROC only.
Training crops come only from training images, test crops only from test images.

Two parts:
(a) choice, on *training* frames only (``--choose``, default ksdd): the crops of two thirds of the
    training commutators fit each rule's model; crops of the other third, as they are and with one
    synthetic defect each pasted on (``inspector.synthetic_defects``, with masks), are scored.
    Letterboxed maps are cut back to the frame before pixel figures here.
(b) test, end to end on each proxy's test split, for every rule and anomalib.
The crack proxy (test split) and part (a) on ksdd choose; ksdd's test split checks.

Input-size rules compared (``--rules``); each trains the same defaults otherwise:
- ``median``: today's ``default_input_hw`` (``training_input_hw``): medians of all training frames,
  and with both orientations common a square whose side keeps the median frame's short side at
  112 px (the rule);
- ``square``: 112x112, every frame squashed to it (the median aspect alone gives this here);
- ``first``: the rule before it, the first training frame's aspect (whatever that frame is);
- ``portrait`` / ``landscape``: 112 px across with the long side at 2.8x, squashing every frame
  to it (what the first-frame rule gives when that frame is a 2.8:1 one);
- ``letterbox``: every frame (training and test) padded to a square with its median grey before
  it is written, then the defaults at 112x112; in part (b) its pixel figures count the padding
  as good pixels, so only its image AUROC compares there.
Then anomalib 2.7's ``PatchcoreModel`` with its stock settings on the same weights, as in
``scripts/bench_generalise.py`` (its memory bank the same 10% greedy coreset of its embeddings,
computed by inspector's implementation; calibrated good-only on the same held-out 10%).

Printed per dataset and rule: image AUROC, pixel AUROC and AUPRO (on each frame's own aspect,
long side 256 px, as ``inspector eval``), the false-reject and miss rates at the stored
threshold, how many test frames were flagged out of domain, the input size and the training time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector import metrics  # noqa: E402
from inspector.autoconfig import default_input_hw, input_sizes  # noqa: E402
from inspector.calibration import calibrate_good_only  # noqa: E402
from inspector.evaluation import eval_grid, evaluate, frame_masks, pixel_figures  # noqa: E402
from inspector.images import read_image  # noqa: E402
from inspector.manifest import Manifest, build_manifest, load_manifest, resolve  # noqa: E402
from inspector.pipeline import Inspector  # noqa: E402
from inspector.preprocess import to_batch  # noqa: E402
from inspector.training import load_items, split_holdout, train  # noqa: E402
from models.patchcore import PatchCore, PatchCoreConfig  # noqa: E402

MAX_ASPECT = 2.8
SIDES = (100, 630)
STOCK = PatchCoreConfig(
    layers=("blocks.2", "blocks.4"), input_size=224, feature_stride=None, fine_pool="avg", standardize=False
)
RULES = ("median", "square", "first", "portrait", "landscape", "letterbox")


def _grey(path: Path) -> np.ndarray:
    return cv2.cvtColor(read_image(path), cv2.COLOR_RGB2GRAY)  # the magnetic tiles are grey


def _random_box(
    rng: np.random.Generator, h0: int, w0: int, shape: tuple[float, bool] | None = None
) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """A crop box (y, x, h, w) of the source and the size (h, w) it is resized to; ``shape`` fixes
    the aspect and orientation (else drawn)."""
    a, landscape = shape or (float(np.exp(rng.uniform(0.0, np.log(MAX_ASPECT)))), bool(rng.integers(2)))
    long_max = min(w0, h0 * a) if landscape else min(h0, w0 * a)
    long_src = max(8, int(long_max * rng.uniform(0.6, 1.0)))
    short_src = max(4, int(round(long_src / a)))
    out_long = int(rng.uniform(SIDES[0] * a, SIDES[1]))
    out_short = max(SIDES[0], int(round(out_long / a)))
    h, w = (short_src, long_src) if landscape else (long_src, short_src)
    h, w = min(h, h0), min(w, w0)
    y, x = int(rng.integers(0, h0 - h + 1)), int(rng.integers(0, w0 - w + 1))
    return (y, x, h, w), ((out_short, out_long) if landscape else (out_long, out_short))


def _cut(img: np.ndarray, box: tuple[int, int, int, int], out_hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    y, x, h, w = box
    crop = img[y : y + h, x : x + w]
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if h > out_hw[0] and w > out_hw[1] else cv2.INTER_LINEAR
    return cv2.resize(crop, (out_hw[1], out_hw[0]), interpolation=interp)


def _darkest_box(rng: np.random.Generator, img: np.ndarray, tries: int = 6) -> tuple:
    """Of ``tries`` random crops of one drawn aspect and orientation, the one holding most of the
    tile's darkest 1% of pixels (crack); drawing the shape first keeps the aspects unbiased."""
    dark = img <= np.percentile(img, 1)
    shape = (float(np.exp(rng.uniform(0.0, np.log(MAX_ASPECT)))), bool(rng.integers(2)))
    boxes = [_random_box(rng, *img.shape[:2], shape) for _ in range(tries)]
    return max(boxes, key=lambda b: dark[b[0][0] : b[0][0] + b[0][2], b[0][1] : b[0][1] + b[0][3]].sum())


def _defect_box(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray) -> tuple:
    """A random crop holding at least half of the defect's mask (the closest of 200 tries if none)."""
    total = max(1, int((mask > 127).sum()))
    best, best_share = None, -1.0
    for _ in range(200):
        b = _random_box(rng, *img.shape[:2])
        y, x, h, w = b[0]
        share = float((mask[y : y + h, x : x + w] > 127).sum()) / total
        if share >= 0.5:
            return b
        if share > best_share:
            best, best_share = b, share
    return best


def letterbox(img: np.ndarray) -> np.ndarray:
    """The frame centred on a square of its own median grey."""
    h, w = img.shape[:2]
    s = max(h, w)
    out = np.full((s, s), int(np.median(img)), img.dtype)
    y, x = (s - h) // 2, (s - w) // 2
    out[y : y + h, x : x + w] = img
    return out


def _write(path: Path, img: np.ndarray, box_letter: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), letterbox(img) if box_letter else img)


def make_proxy(
    data: Path, name: str, out: Path, seed: int, letter: bool = False, train_crops: int | None = None
) -> Manifest:
    """Writes the variable-aspect proxy of ``name`` (ksdd or crack) in MVTec layout; returns its manifest.

    ``train_crops``: crops per training image (default 2 for ksdd, 1 for crack); 4 gives ksdd
    700 training frames, near the held-back magnetic tiles' 761."""
    rng = np.random.default_rng(seed)
    src = data / name
    manifest = load_manifest(ROOT / "data_manifests" / f"{name}.json")
    for it in manifest.split("train"):
        img = _grey(resolve(src, it.path))
        for k in range(train_crops or (2 if name == "ksdd" else 1)):
            box = _darkest_box(rng, img) if name == "crack" else _random_box(rng, *img.shape)
            _write(out / "train" / "good" / f"{Path(it.path).stem}_{k}.png", _cut(img, *box), letter)
    for it in manifest.split("test"):
        img = _grey(resolve(src, it.path))
        cls = it.defect or "good"
        for k in range(2 if name == "ksdd" and it.is_anomalous else 1):
            stem = f"{Path(it.path).stem.replace(' ', '_')}_{k}"
            if name == "crack":
                box = _darkest_box(rng, img)
            elif it.mask:
                mask = _grey(resolve(src, it.mask))
                box = _defect_box(rng, img, mask)
                m = _cut(mask, *box, nearest=True)
                _write(out / "ground_truth" / cls / f"{stem}_mask.png", ((m > 127) * 255).astype(np.uint8), letter)
            else:
                box = _random_box(rng, *img.shape)
            _write(out / "test" / cls / f"{stem}.png", _cut(img, *box), letter)
    return build_manifest(out, "mvtec", name=f"{name}-variable-aspect")


def input_hw_for(rule: str, manifest: Manifest, root: Path) -> tuple[int | None, int | None]:
    if rule == "median":
        return default_input_hw(manifest, root)
    if rule in ("square", "letterbox"):
        return None, None
    if rule == "first":  # the rule before: input_sizes() of the first training frame's header
        from PIL import Image

        with Image.open(resolve(root, manifest.split("train")[0].path)) as im:
            w, h = im.size
        hw = input_sizes((h, w))[-1]
        return (None, None) if hw == (112, 112) else hw
    long = int(round(112 * MAX_ASPECT / 8)) * 8
    return (long, 112) if rule == "portrait" else (112, long)


def run_rule(rule: str, manifest: Manifest, root: Path, out_dir: Path) -> dict[str, Any]:
    h, w = input_hw_for(rule, manifest, root)
    cfg = PatchCoreConfig(input_size=h or PatchCoreConfig().input_size, input_width=w)
    tic = time.perf_counter()
    train(manifest, root, out_dir, config=cfg, device="cpu")
    fit_s = time.perf_counter() - tic
    insp = Inspector.load(out_dir, "cpu")
    rep = evaluate(insp, manifest, root, gradcam=False).report
    keys = ("image_auroc", "per_defect", "pixel_auroc", "aupro", "false_reject_rate", "miss_rate", "out_of_domain")
    return {
        **{k: rep[k] for k in keys},
        "input_hw": list(insp.model.config.input_hw),
        "train_seconds": round(fit_s, 1),
    }


def _predict_maps(model: PatchCore, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    hw = model.config.input_hw
    scores, maps = [], []
    for i in range(0, len(images), 16):
        chunk = images[i : i + 16]
        p = model.predict(to_batch(chunk, hw))
        scores.append(p.score.float().numpy().reshape(-1))
        for im, a in zip(chunk, p.anomaly_map.float().numpy(), strict=True):
            maps.append(cv2.resize(a, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR))
    return np.concatenate(scores), maps


def _box_rgb(img: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """An RGB frame letterboxed like ``letterbox``, and where the frame sits in it (y, x, h, w)."""
    h, w = img.shape[:2]
    s = max(h, w)
    y, x = (s - h) // 2, (s - w) // 2
    out = np.empty((s, s, 3), img.dtype)
    out[:] = np.median(img.reshape(-1, 3), axis=0).astype(img.dtype)
    out[y : y + h, x : x + w] = img
    return out, (y, x, h, w)


def choice_set(
    manifest: Manifest, root: Path, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """*Training* frames only: the crops of two thirds of the source images fit; crops of the
    other third, as they are and with one synthetic defect each, are scored. Returns the fit
    frames, the good held-out frames, the frames scored, their labels and their masks (on each
    frame's ``eval_grid``)."""
    from inspector.synthetic_defects import defective_set

    items = manifest.split("train")
    sources = sorted({Path(it.path).stem.rsplit("_", 1)[0] for it in items})
    held = set(np.random.default_rng(seed).permutation(len(sources))[: len(sources) // 3].tolist())
    held_names = {sources[i] for i in held}
    fit = [it for it in items if Path(it.path).stem.rsplit("_", 1)[0] not in held_names]
    ev = [it for it in items if Path(it.path).stem.rsplit("_", 1)[0] in held_names]
    fit_images, good = load_items(fit, root), load_items(ev, root)
    bad, bad_masks, _ = defective_set(good, fit_images[:20], 1, seed=seed + 7)
    images = [*good, *bad]
    labels = np.array([0] * len(good) + [1] * len(bad))
    full_masks = [np.zeros(im.shape[:2], np.uint8) for im in good] + list(bad_masks)
    masks = []
    for m in full_masks:
        gh, gw = eval_grid(m.shape)
        masks.append(cv2.resize(m, (gw, gh), interpolation=cv2.INTER_NEAREST) > 127)
    return fit_images, good, images, labels, masks


def choose_part(manifest: Manifest, root: Path, rules: list[str], seed: int) -> dict[str, Any]:
    """The rules on *training* frames only (``choice_set``), synthetic defects pasted, scored."""
    fit_images, good, images, labels, masks = choice_set(manifest, root, seed)
    out: dict[str, Any] = {"n_fit": len(fit_images), "n_good": len(good), "n_defect": len(images) - len(good)}
    for rule in rules:
        tic = time.perf_counter()
        h, w = input_hw_for(rule, manifest, root)
        cfg = PatchCoreConfig(input_size=h or PatchCoreConfig().input_size, input_width=w)
        torch.manual_seed(cfg.seed)
        model = PatchCore(cfg)
        if rule == "letterbox":
            boxed = [_box_rgb(im) for im in images]
            fit_boxed = [_box_rgb(im)[0] for im in fit_images]
            model.fit(to_batch(fit_boxed[i : i + 16], cfg.input_hw) for i in range(0, len(fit_boxed), 16))
            scores, bmaps = _predict_maps(model, [b for b, _ in boxed])
            maps = [m[y : y + hh, x : x + ww] for m, (_, (y, x, hh, ww)) in zip(bmaps, boxed, strict=True)]
        else:
            model.fit(to_batch(fit_images[i : i + 16], cfg.input_hw) for i in range(0, len(fit_images), 16))
            scores, maps = _predict_maps(model, images)
        out[rule] = {
            "input_hw": list(cfg.input_hw),
            "image_auroc": metrics.image_auroc(scores, labels),
            **pixel_figures(maps, masks),
            "seconds": round(time.perf_counter() - tic, 1),
        }
        print(f"  choose {rule}: {json.dumps(out[rule])}", flush=True)
    return out


def anomalib_entry(manifest: Manifest, root: Path) -> dict[str, Any]:
    """anomalib's stock PatchcoreModel on inspector's weights (see scripts/bench_generalise.py)."""
    from inspector.bench_reference import anomalib_available, anomalib_version, build_reference, reference_predict
    from models.backbones import build_body

    if not anomalib_available():
        return {"skipped": "anomalib not installed"}
    good = [it for it in manifest.split("train")]
    fit_items, hold_items = split_holdout(good, 0.1, 0)
    fit_images = load_items(fit_items, root)
    tic = time.perf_counter()
    torch.manual_seed(STOCK.seed)
    ours = PatchCore(STOCK)
    ours.fit(to_batch(fit_images[i : i + 16], STOCK.input_hw) for i in range(0, len(fit_images), 16))
    ref = build_reference(STOCK.backbone, STOCK.layers, build_body(STOCK.backbone), STOCK.num_neighbours)
    ref.memory_bank = ours.memory_bank.clone()
    fit_s = time.perf_counter() - tic

    def predict(images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        scores, maps = [], []
        for i in range(0, len(images), 16):
            chunk = images[i : i + 16]
            s, m = reference_predict(ref, ours.normalize(to_batch(chunk, STOCK.input_hw)))
            scores.append(s.float().numpy().reshape(-1))
            for im, a in zip(chunk, m.float().numpy(), strict=True):
                a = a.reshape(a.shape[-2], a.shape[-1])
                maps.append(cv2.resize(a, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR))
        return np.concatenate(scores), maps

    test = manifest.split("test")
    images = load_items(test, root)
    labels = np.array([it.is_anomalous for it in test], int)
    scores, maps = predict(images)
    hold_scores, _ = predict(load_items(hold_items, root))
    frr, miss = metrics.rates_at(scores, labels, calibrate_good_only(hold_scores).decision)
    masks = frame_masks(test, root, [im.shape[:2] for im in images])
    return {
        "version": anomalib_version(),
        "image_auroc": metrics.image_auroc(scores, labels),
        "per_defect": metrics.per_defect_auroc(scores, labels, [it.defect for it in test]),
        **pixel_figures(maps, masks),
        "false_reject_rate": frr,
        "miss_rate": miss,
        "out_of_domain": None,
        "input_hw": list(STOCK.input_hw),
        "train_seconds": round(fit_s, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--datasets", nargs="+", default=["crack", "ksdd"])
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    ap.add_argument("--skip-anomalib", action="store_true")
    ap.add_argument("--choose", nargs="*", default=["ksdd"], help="datasets whose training crops get part (a)")
    ap.add_argument("--skip-test", action="store_true", help="part (a) only: no test split is read")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="write the proxies here instead of a temporary folder")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="variable_aspect_"))
    base = args.keep or tmp
    try:
        for name in args.datasets:
            if not (args.data / name).is_dir():
                print(f"{name}: skipped, data not found at {args.data / name}")
                continue
            res: dict[str, Any] = {}
            root = base / name
            if not (root / "train").is_dir():
                make_proxy(args.data, name, root, args.seed)
            manifest = build_manifest(root, "mvtec", name=f"{name}-variable-aspect")
            res["proxy"] = _describe(manifest, root)
            print(f"{name}: {json.dumps(res['proxy'])}", flush=True)
            if name in args.choose:
                res["choose_on_training_crops"] = choose_part(manifest, root, args.rules, args.seed)
            report[name] = res
            if args.skip_test:
                continue
            for rule in args.rules:
                if rule == "letterbox":
                    lroot = base / f"{name}_letterbox"
                    if not (lroot / "train").is_dir():
                        make_proxy(args.data, name, lroot, args.seed, letter=True)
                    lb = build_manifest(lroot, "mvtec", name=f"{name}-letterbox")
                    res[rule] = run_rule(rule, lb, lroot, tmp / "m" / f"{name}_{rule}")
                else:
                    res[rule] = run_rule(rule, manifest, root, tmp / "m" / f"{name}_{rule}")
                print(f"  {name} {rule}: {json.dumps(res[rule])}", flush=True)
            if not args.skip_anomalib:
                res["anomalib"] = anomalib_entry(manifest, root)
                print(f"  {name} anomalib: {json.dumps(res['anomalib'])}", flush=True)
            report[name] = res
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(report, indent=2, default=str))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(report)
    return 0


def _describe(manifest: Manifest, root: Path) -> dict[str, Any]:
    from PIL import Image

    sizes = []
    for it in manifest.items:
        with Image.open(resolve(root, it.path)) as im:
            sizes.append(im.size)
    w = np.array([s[0] for s in sizes])
    h = np.array([s[1] for s in sizes])
    a = np.maximum(w / h, h / w)
    train = manifest.split("train")
    test = manifest.split("test")
    return {
        "n_train": len(train),
        "n_test_good": sum(not it.is_anomalous for it in test),
        "n_test_defect": sum(it.is_anomalous for it in test),
        "width": [int(w.min()), int(w.max())],
        "height": [int(h.min()), int(h.max())],
        "max_aspect": round(float(a.max()), 2),
        "portrait_share": round(float((h > w).mean()), 2),
    }


def print_table(report: dict[str, Any]) -> None:
    def f(v: Any, pct: bool = False) -> str:
        if v is None:
            return "  -  "
        return f"{100 * v:.1f}%" if pct else f"{v:.4f}"

    print(
        f"\n{'dataset':<7} {'rule':<10} {'input':>8} {'img AUROC':>9} {'px AUROC':>9} {'AUPRO':>7} "
        f"{'FRR / miss':>14} {'OOD':>5} {'train s':>8}"
    )
    for name, res in report.items():
        for key, e in res.get("choose_on_training_crops", {}).items():
            if isinstance(e, dict):
                hw = "x".join(str(v) for v in e["input_hw"])
                print(
                    f"{name:<7} {key:<10} {hw:>8} {f(e['image_auroc']):>9} {f(e['pixel_auroc']):>9} "
                    f"{f(e['aupro']):>7}   (a) training crops, synthetic defects"
                )
        for key, e in res.items():
            if key in ("proxy", "choose_on_training_crops") or "image_auroc" not in e:
                continue
            hw = "x".join(str(v) for v in e["input_hw"])
            rates = f"{f(e['false_reject_rate'], True)} / {f(e['miss_rate'], True)}"
            ood = "-" if e["out_of_domain"] is None else str(e["out_of_domain"])
            print(
                f"{name:<7} {key:<10} {hw:>8} {f(e['image_auroc']):>9} {f(e['pixel_auroc']):>9} {f(e['aupro']):>7} "
                f"{rates:>14} {ood:>5} {e['train_seconds']:>8}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
