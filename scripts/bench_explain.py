"""Benchmark of the explanations: localisation, randomisation check, deletion faithfulness, agreement, cost.

Without ``--manifest`` it makes synthetic pills and surfaces with masks, trains small models on
them and measures; with ``--manifest/--root`` (and ``--model``, else a model is trained with
``inspector train``) it measures a real dataset. Pixel AUROC needs masks and is "n/a" without.

Figures (all on the test split, at most ``--limit`` images per class, seeded):
- localisation: pixel AUROC over the defective images of the anomaly map, of Grad-CAM (display
  units: peak = score) and of a centred Gaussian blob that knows nothing of the image;
- randomisation (Adebayo et al., 2018): Spearman rank correlation of Grad-CAM before/after
  re-initialising the backbone weights (memory bank kept); near 0 means the map depends on them;
- deletion: replace the top-ranked pixels (anomaly map, Grad-CAM, or a smooth random map) in
  steps up to half the image by a good training image's pixels (``--fill good``) or by a blurred
  copy (``--fill blur``); area under the normalised-score curve (lower = more faithful);
- agreement: IoU of top-10 % regions of anomaly map and Grad-CAM per frame;
- cost: ms per frame per method on this CPU, after a warm-up.

Example: .venv/bin/python scripts/bench_explain.py --manifest data_manifests/pillqc.json --root ../shared/data/pillqc
"""

from __future__ import annotations

import argparse
import copy
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
from inspector.manifest import Manifest, load_manifest  # noqa: E402
from inspector.metrics import pixel_auroc  # noqa: E402
from inspector.pipeline import Inspector  # noqa: E402
from inspector.preprocess import to_batch  # noqa: E402
from inspector.training import load_items  # noqa: E402
from models.backbones import build_feature_extractor  # noqa: E402
from models.explain import anomaly_grad_cam, blur_images  # noqa: E402
from models.patchcore.anomaly_map import smooth  # noqa: E402

FRACTIONS = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5])


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


def deletion_curve(model, x: torch.Tensor, ranking: np.ndarray, blurred: torch.Tensor) -> np.ndarray:
    """Normalised scores while the top-ranked pixels are replaced by ``blurred``, 0 to 50 % of the image."""
    order = np.argsort(-ranking.ravel(), kind="stable")
    batch = []
    for f in FRACTIONS:
        mask = np.zeros(ranking.size, np.float32)
        mask[order[: int(round(f * ranking.size))]] = 1
        m = torch.from_numpy(mask.reshape(ranking.shape))[None, None]
        batch.append(x * (1 - m) + blurred * m)
    scores = model.predict(torch.cat(batch)).score.cpu().numpy()
    return scores / max(scores[0], 1e-12)


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
    name: str, model_dir: Path, manifest: Manifest, root: Path, limit: int, n_delete: int, seed: int, fill: str
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

    masks = _load_masks([items[i] for i in bad], root, [images[i].shape[:2] for i in bad], size)
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

    rand = copy.deepcopy(model)
    fresh, _ = build_feature_extractor(model.config.backbone, model.config.layers, pretrained=False, seed=seed + 1)
    rand.extractor.load_state_dict(fresh.state_dict())
    rho_cam, rho_map = [], []
    for i in bad[: max(n_delete, 1)]:
        r2 = anomaly_grad_cam(rand, to_batch([images[i]], size))
        rho_cam.append(spearmanr(cams[i].ravel(), r2.cam[0].numpy().ravel()).statistic)
        rho_map.append(spearmanr(amaps[i].ravel(), r2.anomaly_map[0].numpy().ravel()).statistic)
    print(f"randomisation: Spearman before/after re-initialised backbone, Grad-CAM {fmt(rho_cam)}")
    print(f"               (anomaly map, for comparison: {fmt(rho_map)})")

    rng = np.random.default_rng(seed)
    # Blur is far from anything PatchCore saw, so on real photos it raises the score wherever it
    # lands; a good training image's pixels at the same place are the in-distribution "removal".
    good = to_batch(load_items(manifest.split("train")[:1], root), size) if fill == "good" else None
    dele: dict[str, list[np.ndarray]] = {"anomaly map": [], "Grad-CAM": [], "random": []}
    for i in bad[:n_delete]:
        x = to_batch([images[i]], size)
        replacement = good if good is not None else blur_images(x, max(1.0, size / 16))
        noise = smooth(torch.from_numpy(rng.standard_normal((1, 1, size, size)).astype(np.float32)), size / 28)
        for key, ranking in (("anomaly map", amaps[i]), ("Grad-CAM", cams[i]), ("random", noise[0, 0].numpy())):
            dele[key].append(deletion_curve(model, x, ranking, replacement))
    auc = {k: [float(np.trapezoid(c, FRACTIONS) / FRACTIONS[-1]) for c in v] for k, v in dele.items()}
    at5 = {k: [float(c[list(FRACTIONS).index(0.05)]) for c in v] for k, v in dele.items()}
    print(
        f"deletion AUC (mean normalised score, top 0-50 % replaced by {fill}, lower = more faithful): "
        + " | ".join(f"{k} {fmt(v)}" for k, v in auc.items())
    )
    print("  score left after replacing the top 5 %: " + " | ".join(f"{k} {fmt(v)}" for k, v in at5.items()))
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
        "--fill", choices=("good", "blur"), default="good", help="what replaces deleted pixels: a good image, or blur"
    )
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
            bench(f"synthetic {kind}", out, m, root, args.limit, args.delete, args.seed, args.fill)
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
    bench(m.name, model, m, args.root, args.limit, args.delete, args.seed, args.fill)


if __name__ == "__main__":
    main()
