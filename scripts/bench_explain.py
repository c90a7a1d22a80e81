"""Benchmark of the explanations: localisation, randomisation check, deletion faithfulness, agreement, cost.

Without ``--manifest`` it makes synthetic pills and surfaces with masks, trains small models on
them and measures; with ``--manifest/--root`` (and ``--model``, else a model is trained with
``inspector train``) it measures a real dataset. Pixel AUROC needs masks and is "n/a" without.

Figures (all on the test split, at most ``--limit`` images per class, seeded):
- localisation: pixel AUROC over the defective images of the anomaly map, of Grad-CAM (display
  units: peak = score) and of a centred Gaussian blob that knows nothing of the image;
- randomisation (Adebayo et al., 2018): Spearman rank correlation of Grad-CAM before/after
  re-initialising the backbone weights (memory bank kept); near 0 means the map depends on them;
- deletion: replace the top-ranked pixels in steps up to half the image by a good training
  image's pixels (``--fill good``), a blurred copy (``--fill blur``) or an inpainting from the
  surroundings (``--fill inpaint``, Telea), optionally through masks feathered by ``--feather`` px;
  area under the normalised-score curve (lower = more faithful) for the anomaly map, Grad-CAM and
  three references: a smooth random map, the map shifted to a random place (same blobs, wrong
  place) and the map's least relevant pixels first (LeRF, Samek et al., 2017). Also the area
  between the LeRF and the most-relevant-first curves (ABPC, higher = more faithful). With blur,
  a check of the fill itself: it must remove the defect (whole images blurred: good-vs-defective
  AUROC near 0.5) without being an anomaly itself (good images' score ratio near 1);
- agreement: IoU of top-10 % regions of anomaly map and Grad-CAM per frame;
- cost: ms per frame per method on this CPU, after a warm-up.

Example: .venv/bin/python scripts/bench_explain.py --manifest data_manifests/pillqc.json --root ../shared/data/pillqc
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from inspector.evaluation import _load_masks  # noqa: E402
from inspector.explain import Explainer, agreement, train_defect_head  # noqa: E402
from inspector.faithfulness import FRACTIONS, deletion_curve  # noqa: E402
from inspector.manifest import Manifest, load_manifest  # noqa: E402
from inspector.metrics import image_auroc, pixel_auroc  # noqa: E402
from inspector.pipeline import Inspector  # noqa: E402
from inspector.preprocess import to_batch  # noqa: E402
from inspector.training import load_items  # noqa: E402
from models.explain import anomaly_grad_cam, blur_images  # noqa: E402
from models.patchcore.anomaly_map import smooth  # noqa: E402


def pick(manifest: Manifest, limit: int, seed: int) -> list:
    """At most ``limit`` test images of each class (good and every defect), seeded."""
    rng = np.random.default_rng(seed)
    out = []
    test = manifest.split("test")
    for key in sorted({it.defect or "good" for it in test}):
        items = [it for it in test if (it.defect or "good") == key]
        out += [items[i] for i in sorted(rng.permutation(len(items))[:limit])]
    return out


def blob(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    return np.exp(-(xx**2 + yy**2) / (2 * (size / 4) ** 2))


def timed(fn, repeat: int) -> float:
    fn()  # warm-up: first calls allocate
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) * 1000 / repeat


def fmt(values: list[float]) -> str:
    v = np.array([x for x in values if x is not None and np.isfinite(x)])
    return f"{v.mean():.3f} +- {v.std():.3f} (n={len(v)})" if len(v) else "n/a"


def bench(
    name: str,
    model_dir: Path,
    manifest: Manifest,
    root: Path,
    limit: int,
    n_delete: int,
    seed: int,
    fill: str,
    feather: float = 0.0,
) -> None:
    print(f"\n=== {name}: model {model_dir}")
    inspector = Inspector.load(model_dir, "cpu")
    model = inspector.model
    size = model.config.input_size
    if len({it.defect for it in manifest.items if it.is_anomalous and it.defect}) >= 2:
        r = train_defect_head(inspector, manifest, root, share=0.5, seed=seed)
        per = ", ".join(f"{c} {a:.3f}" for c, a in r.per_class_accuracy.items())
        print(
            f"defect head: trained on {r.n_train}, held-out accuracy {r.heldout_accuracy:.3f} "
            f"on {sum(r.n_heldout.values())} images ({per})"
        )
    else:
        print("defect head: absent (fewer than two labelled defect types)")
    explainer = Explainer.load(inspector)
    items = pick(manifest, limit, seed)
    images = load_items(items, root)
    amaps, cams, scores = [], [], []
    agree: dict[str, list[float]] = {}
    for it, img in zip(items, images, strict=True):
        x = to_batch([img], size)
        res = anomaly_grad_cam(model, x)
        amaps.append(res.anomaly_map[0].numpy())
        unit = res.cam[0].numpy() / max(float(res.cam[0].max()), 1e-12)
        cams.append(unit * float(res.score[0]))
        scores.append(float(res.score[0]))
        agree.setdefault(it.defect or "good", []).append(agreement(amaps[-1], cams[-1]))
    bad = [i for i, it in enumerate(items) if it.is_anomalous]
    print(f"images: {len(items)} ({len(bad)} defective), input {size} px")

    masks = _load_masks([items[i] for i in bad], root, size)
    if masks is not None and len(bad):
        base = np.stack([blob(size)] * len(bad))
        a = np.stack([amaps[i] for i in bad])
        c = np.stack([cams[i] for i in bad])
        print(
            f"localisation pixel AUROC (defective images): anomaly map {pixel_auroc(a, masks):.3f} | "
            f"Grad-CAM {pixel_auroc(c, masks):.3f} | centred blob {pixel_auroc(base, masks):.3f}"
        )
    else:
        print("localisation pixel AUROC: n/a (the manifest has no masks)")

    rand = model.with_random_backbone(seed=seed + 1)
    rho_cam, rho_map = [], []
    for i in bad[: max(n_delete, 1)]:
        r2 = anomaly_grad_cam(rand, to_batch([images[i]], size))
        rho_cam.append(spearmanr(cams[i].ravel(), r2.cam[0].numpy().ravel()).statistic)
        rho_map.append(spearmanr(amaps[i].ravel(), r2.anomaly_map[0].numpy().ravel()).statistic)
    print(f"randomisation: Spearman before/after re-initialised backbone, Grad-CAM {fmt(rho_cam)}")
    print(f"               (anomaly map, for comparison: {fmt(rho_map)})")

    rng = np.random.default_rng(seed)
    shift_rng = np.random.default_rng(seed + 1)  # apart, so the random map stays what it was
    sigma = max(1.0, size / 16)
    # Blur is no removal for PatchCore on real photos: it is a stronger anomaly than the defects
    # and keeps much of them (see the blur check below), so it raises the score most where the map
    # points. A good training image's pixels at the same place are the in-distribution "removal".
    good = to_batch(load_items(manifest.split("train")[:1], root), size) if fill == "good" else None
    dele: dict[str, list[np.ndarray]] = {}

    def output(batch: torch.Tensor) -> np.ndarray:
        return model.predict(batch).score.cpu().numpy()

    for i in bad[:n_delete]:
        x = to_batch([images[i]], size)
        replacement = good if good is not None else "inpaint" if fill == "inpaint" else blur_images(x, sigma)
        noise = smooth(torch.from_numpy(rng.standard_normal((1, 1, size, size)).astype(np.float32)), size / 28)
        dy, dx = shift_rng.integers(size // 4, 3 * size // 4, 2)
        rankings = {
            "anomaly map": amaps[i],
            "Grad-CAM": cams[i],
            "random": noise[0, 0].numpy(),
            "shifted map": np.roll(amaps[i], (int(dy), int(dx)), (0, 1)),
            "LeRF": -amaps[i],
        }
        for key, ranking in rankings.items():
            dele.setdefault(key, []).append(deletion_curve(output, x, ranking, replacement, feather))
    auc = {k: [float(np.trapezoid(c, FRACTIONS) / FRACTIONS[-1]) for c in v] for k, v in dele.items()}
    at5 = {k: [float(c[list(FRACTIONS).index(0.05)]) for c in v] for k, v in dele.items()}
    how = f"{fill}, masks feathered {feather:g} px" if feather > 0 else fill
    print(
        f"deletion AUC (mean normalised score, top 0-50 % replaced by {how}, lower = more faithful): "
        + " | ".join(f"{k} {fmt(v)}" for k, v in auc.items())
    )
    print("  score left after replacing the top 5 %: " + " | ".join(f"{k} {fmt(v)}" for k, v in at5.items()))
    lerf = np.array(auc["LeRF"])
    print(
        "  ABPC (AUC LeRF - AUC most relevant first, higher = more faithful): "
        + " | ".join(f"{k} {fmt(list(lerf - np.array(auc[k])))}" for k in ("anomaly map", "Grad-CAM"))
    )
    print(
        "  share of images where the anomaly map's AUC is below the reference's: "
        + " | ".join(
            f"{k} {np.mean(np.array(auc['anomaly map']) < np.array(v)):.2f}"
            for k, v in auc.items()
            if k != "anomaly map"
        )
    )
    if fill == "blur":
        # Deletion is only a faithfulness test if the fill removes the evidence without adding its
        # own (Hooker et al., 2019): measured here on whole images, blind to any map.
        blurred = model.predict(blur_images(to_batch(images, size), sigma)).score.cpu().numpy()
        labels = np.array([it.is_anomalous for it in items])
        ratio = blurred[~labels] / np.maximum(np.array(scores)[~labels], 1e-12)
        auroc = image_auroc(blurred, labels)
        print(
            f"  blur check, whole images blurred (sigma {sigma:g} px): good-vs-defective AUROC "
            f"{'n/a' if auroc is None else f'{auroc:.3f}'} (0.5 = defects removed), good images' score "
            f"ratio {fmt(list(ratio))} (1 = blur not itself an anomaly)"
        )
    print(
        "agreement (IoU top 10 %, anomaly map vs Grad-CAM; chance ~0.05): "
        + " | ".join(f"{k} {fmt(v)}" for k, v in sorted(agree.items()))
    )

    frame = images[bad[0]] if bad else images[0]
    costs = {
        "anomaly (inspect)": timed(lambda: inspector.inspect_images([frame]), 3),
        "anomaly + Grad-CAM (explain)": timed(lambda: explainer.explain(frame, ("anomaly", "gradcam")), 3),
    }
    e = explainer.explain(frame, ("anomaly", "gradcam"))
    costs["  of which Grad-CAM on top"] = e.ms["gradcam"]
    if explainer.has_defect_classifier:
        dg = timed(lambda: explainer.explain(frame, ("anomaly", "defect-gradcam")), 2)
        costs["defect Grad-CAM"] = dg - costs["anomaly (inspect)"]
    base_ms = costs["anomaly (inspect)"]
    costs["saliency"] = timed(lambda: explainer.explain(frame, ("anomaly", "saliency")), 2) - base_ms
    costs["occlusion"] = _once(lambda: explainer.explain(frame, ("anomaly", "occlusion"))) - base_ms
    print(
        f"ms per frame (CPU, torch threads {torch.get_num_threads()}): "
        + " | ".join(f"{k.strip()} {v:.0f}" for k, v in costs.items())
    )


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path)
    ap.add_argument("--root", type=Path)
    ap.add_argument("--model", type=Path, help="trained model directory (default: train one)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "explain_bench")
    ap.add_argument("--limit", type=int, default=12, help="test images per class")
    ap.add_argument("--delete", type=int, default=8, help="defective images for the deletion curves")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--fill",
        choices=("good", "blur", "inpaint"),
        default="good",
        help="what replaces deleted pixels: a good image, blur, or inpainting from the surroundings",
    )
    ap.add_argument("--feather", type=float, default=0.0, help="Gaussian sigma (px) softening the deletion masks")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    os.environ.setdefault("INSPECTOR_NO_PROGRESS", "1")
    if args.manifest is None:
        from inspector.synthetic import write_dataset
        from inspector.training import train
        from models.patchcore import PatchCoreConfig

        for kind in ("pill", "surface"):
            root = args.workdir / "synthetic"
            m = write_dataset(root, kind, n_train=30, n_test_good=6, n_test_defect=8, seed=args.seed)
            out = args.workdir / f"synthetic-{kind}"
            if not (out / "model.json").is_file():
                train(m, root, out, config=PatchCoreConfig(input_size=128), device="cpu")
            bench(f"synthetic {kind}", out, m, root, args.limit, args.delete, args.seed, args.fill, args.feather)
        return
    if args.root is None:
        ap.error("--manifest needs --root")
    m = load_manifest(args.manifest)
    model = args.model or args.workdir / m.name
    if not (model / "model.json").is_file():
        cmd = [
            str(PROJECT / ".venv/bin/inspector"),
            "train",
            "--manifest",
            str(args.manifest),
            "--root",
            str(args.root),
        ]
        subprocess.run([*cmd, "--out", str(model)], check=True)
    bench(m.name, model, m, args.root, args.limit, args.delete, args.seed, args.fill, args.feather)


if __name__ == "__main__":
    main()
