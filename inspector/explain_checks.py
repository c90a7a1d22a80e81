"""The explanation report's measurements per method: localisation, faithfulness, sanity, stability,
agreement with the anomaly map, cost. Qt-free; numbers only (``explain_verdict`` judges them).

All on a small seeded sample at the model's input size, so the report runs in minutes on a CPU:
- localisation: pixel AUROC and AUPRO of the map shown to the operator (``Explanation.display``)
  against masks; where the data has none, against defects pasted onto good test images
  (``inspector.paste_defects``); beside a centred Gaussian blob that knows nothing of the image;
- faithfulness: deletion and insertion areas (``inspector.faithfulness``) with a good image as
  the fill, against a smooth random map and the method's own map shifted to a random place;
  the output is the anomaly score, or the defect class's probability for defect-head methods;
- sanity (Adebayo et al., 2018): Spearman rank correlation of each map before and after the
  backbone is re-initialised at random (memory bank kept), and, for defect-head methods, after
  the head is refitted on shuffled labels;
- stability: Spearman between the map of a frame and of the same frame shifted by a few pixels
  (compared where both see the same content) or re-encoded as JPEG;
- agreement: IoU of the top 10 % regions of the map and of the anomaly map;
- cost: mean ms per frame (Grad-CAM: on top of the inspection pass it shares).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from scipy.stats import spearmanr

from inspector import explainers
from inspector.explain import Explainer, Explanation, agreement
from inspector.faithfulness import curve_area, deletion_curve, insertion_curve
from inspector.images import read_mask
from inspector.manifest import Manifest, ManifestItem, resolve
from inspector.metrics import aupro, pixel_auroc
from inspector.paste_defects import paste_defect
from inspector.preprocess import model_input_hw, to_batch
from inspector.training import load_items
from models.explain import DefectTarget
from models.patchcore import PatchCoreConfig
from models.patchcore.anomaly_map import smooth

SHIFT_PX = 4
JPEG_QUALITY = 70


@dataclass
class Sample:
    """One test image at the model's input size for it, with its mask where known."""

    image: np.ndarray  # RGB uint8 at the model's input (h, w) for this frame
    mask: np.ndarray | None  # bool, same size
    defect: str | None  # None: a good part
    source: str
    pasted: bool = False


@dataclass
class MethodFigures:
    """One method's numbers; None where a measure does not apply or could not be made."""

    name: str
    title: str
    target: str
    fast: bool
    pixel_auroc: float | None = None
    aupro: float | None = None
    localisation_on: str = ""  # "masks" or "pasted defects"
    deletion: float | None = None  # lower = more faithful
    deletion_random: float | None = None
    deletion_shifted: float | None = None
    insertion: float | None = None  # higher = more faithful
    insertion_random: float | None = None
    insertion_shifted: float | None = None
    sanity_backbone: float | None = None  # Spearman after re-initialising the backbone
    sanity_labels: float | None = None  # Spearman after shuffling the defect head's labels
    stability_shift: float | None = None
    stability_jpeg: float | None = None
    agreement: float | None = None
    ms: float | None = None
    n_images: int = 0
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def pick_test_items(manifest: Manifest, limit: int, seed: int) -> list[ManifestItem]:
    """At most ``limit`` test images of each class (good and every defect), seeded."""
    rng = np.random.default_rng(seed)
    out: list[ManifestItem] = []
    test = manifest.split("test")
    for key in sorted({it.defect or "good" for it in test}):
        items = [it for it in test if (it.defect or "good") == key]
        out += [items[i] for i in sorted(rng.permutation(len(items))[:limit])]
    return out


def load_samples(
    manifest: Manifest, root: str | Path, config: PatchCoreConfig, limit: int, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(defective, masked): real defective test images, and the images localisation is scored on
    (the real ones where every one has a mask, else defects pasted onto good test images).

    Each image is at the input size the model gives it live (``model_input_hw``): a 280x112
    model's frames were squashed to 280x280 squares before, a size it never trained on.
    """
    items = pick_test_items(manifest, limit, seed)
    images = load_items(items, root)
    defective, good = [], []
    for it, img in zip(items, images, strict=True):
        h, w = model_input_hw(config, img)
        mask = None
        if it.mask:
            m = read_mask(resolve(root, it.mask))
            mask = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) > 127
        small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        s = Sample(small, mask, it.defect if it.is_anomalous else None, it.path)
        (defective if it.is_anomalous else good).append(s)
    if defective and all(s.mask is not None and s.mask.any() for s in defective):
        return defective, defective
    rng = np.random.default_rng(seed + 7)
    pasted = []
    for i in range(max(len(defective), 1)):
        base = good[i % len(good)] if good else None
        if base is None:
            break
        img, mask = paste_defect(base.image, rng)
        pasted.append(Sample(img, mask, "pasted", base.source + " + pasted defect", pasted=True))
    return defective, pasted


def blob(size: int | tuple[int, int]) -> np.ndarray:
    """A centred Gaussian blob: the localisation of a map that knows nothing of the image."""
    h, w = (size, size) if isinstance(size, int) else size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy - (h - 1) / 2, xx - (w - 1) / 2
    return np.exp(-((xx / w) ** 2 + (yy / h) ** 2) * 8)


def rank_corr(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman over pixels; None where either map is flat (no ranking to compare)."""
    if np.ptp(a) <= 0 or np.ptp(b) <= 0:
        return None
    r = spearmanr(a.ravel(), b.ravel()).statistic
    return float(r) if np.isfinite(r) else None


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    h, w = image.shape[:2]
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)


def _jpeg(image: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _output_fn(explainer: Explainer, target: str, class_index: int | None) -> Callable[[torch.Tensor], np.ndarray]:
    model = explainer.model
    if target == "score":
        return lambda b: model.predict(b).score.float().cpu().numpy()
    assert explainer.head is not None and class_index is not None
    head_fn = DefectTarget(model, explainer.head)

    def prob(b: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(head_fn(b.to(model.mean.device)), 1)[:, class_index].float().cpu().numpy()

    return prob


class Checks:
    """Runs every measurement for a set of methods on one model; see the module docstring."""

    def __init__(
        self,
        explainer: Explainer,
        random_backbone: Explainer,
        shuffled_head: Explainer | None,
        fill: np.ndarray,
        settings: dict[str, Any],
        seed: int = 0,
        max_checks: int | None = None,
    ) -> None:
        self.explainer = explainer
        self.random_backbone = random_backbone
        self.shuffled_head = shuffled_head
        self.fill = fill  # a good image, resized to each sample's size
        self.settings = settings
        self.seed = seed
        self.max_checks = max_checks  # sanity and stability on at most this many defective images

    def run(self, methods: Sequence[str], defective: list[Sample], masked: list[Sample]) -> list[MethodFigures]:
        methods = [m for m in methods if explainers.get(m).target == "score" or self.explainer.head is not None]
        figs = {m: self._empty(m) for m in methods}
        base = [self._explain(self.explainer, s.image, methods) for s in defective]
        for m in methods:
            figs[m].n_images = sum(m in e.maps for e in base)
            figs[m].ms = _mean([e.ms.get(m) for e in base])
            figs[m].agreement = _mean([agreement(e.maps["anomaly"], e.maps[m]) for e in base if m in e.maps])
        self._localisation(figs, methods, masked, base if masked is defective else None)
        self._faithfulness(figs, methods, defective, base)
        n = self.max_checks or len(defective)
        self._sanity(figs, methods, defective[:n], base[:n])
        self._stability(figs, methods, defective[:n], base[:n])
        return list(figs.values())

    def _empty(self, m: str) -> MethodFigures:
        spec = explainers.get(m)
        return MethodFigures(m, spec.title, spec.target, spec.fast)

    def _explain(self, explainer: Explainer, image: np.ndarray, methods: Sequence[str]) -> Explanation:
        return explainer.explain(image, tuple(dict.fromkeys(["anomaly", *methods])), self.settings)

    def _localisation(
        self, figs: dict[str, MethodFigures], methods: Sequence[str], masked: list[Sample], done: list | None
    ) -> None:
        if not masked:
            return
        runs = done if done is not None else [self._explain(self.explainer, s.image, methods) for s in masked]
        masks = [s.mask for s in masked]  # per frame: sizes differ where frames keep their aspect
        for m in methods:
            keep = [i for i, e in enumerate(runs) if m in e.maps]
            if not keep:
                continue
            maps = [runs[i].display(m) for i in keep]
            figs[m].pixel_auroc = pixel_auroc(maps, [masks[i] for i in keep])
            figs[m].aupro = aupro(maps, [masks[i] for i in keep])
            figs[m].localisation_on = "pasted defects" if masked[0].pasted else "masks"

    def blob_localisation(self, masked: list[Sample]) -> float | None:
        if not masked:
            return None
        return pixel_auroc([blob(s.image.shape[:2]) for s in masked], [s.mask for s in masked])

    def _faithfulness(
        self, figs: dict[str, MethodFigures], methods: Sequence[str], defective: list[Sample], base: list[Explanation]
    ) -> None:
        rng = np.random.default_rng(self.seed)
        shift_rng = np.random.default_rng(self.seed + 1)
        curves: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
        for sample, e in zip(defective, base, strict=True):
            h, w = sample.image.shape[:2]
            x = to_batch([sample.image], (h, w))
            fill = to_batch([self.fill], (h, w))
            noise = rng.standard_normal((1, 1, h, w)).astype(np.float32)
            noise = smooth(torch.from_numpy(noise), (h * w) ** 0.5 / 28)[0, 0]
            if h == w:  # square models draw as they always did, so their figures stay comparable
                dy, dx = (int(v) for v in shift_rng.integers(h // 4, 3 * h // 4, 2))
            else:
                dy, dx = int(shift_rng.integers(h // 4, 3 * h // 4)), int(shift_rng.integers(w // 4, 3 * w // 4))
            best = int(np.argmax(list(e.defect_probabilities.values()))) if e.defect_probabilities else None
            for m in methods:
                if m not in e.maps:
                    continue
                out = _output_fn(self.explainer, explainers.get(m).target, best)
                rankings = {"": e.maps[m], "_random": noise.numpy(), "_shifted": np.roll(e.maps[m], (dy, dx), (0, 1))}
                for key, ranking in rankings.items():
                    c = curves[m]
                    c.setdefault("deletion" + key, []).append(curve_area(deletion_curve(out, x, ranking, fill)))
                    c.setdefault("insertion" + key, []).append(curve_area(insertion_curve(out, x, ranking, fill)))
        for m, c in curves.items():
            for key, values in c.items():
                setattr(figs[m], key, _mean(values))

    def _sanity(
        self, figs: dict[str, MethodFigures], methods: Sequence[str], defective: list[Sample], base: list[Explanation]
    ) -> None:
        rho: dict[str, list[float | None]] = {m: [] for m in methods}
        labels: dict[str, list[float | None]] = {m: [] for m in methods}
        defect_methods = [m for m in methods if explainers.get(m).target == "defect"]
        for sample, e in zip(defective, base, strict=True):
            r = self._explain(self.random_backbone, sample.image, methods)
            for m in methods:
                if m in e.maps and m in r.maps:
                    rho[m].append(rank_corr(e.maps[m], r.maps[m]))
            if self.shuffled_head is not None and defect_methods:
                lab = self._explain(self.shuffled_head, sample.image, defect_methods)
                for m in defect_methods:
                    if m in e.maps and m in lab.maps:
                        labels[m].append(rank_corr(e.maps[m], lab.maps[m]))
        for m in methods:
            figs[m].sanity_backbone = _mean(rho[m])
            figs[m].sanity_labels = _mean(labels[m]) if m in defect_methods else None

    def _stability(
        self, figs: dict[str, MethodFigures], methods: Sequence[str], defective: list[Sample], base: list[Explanation]
    ) -> None:
        k = SHIFT_PX
        shift: dict[str, list[float | None]] = {m: [] for m in methods}
        jpeg: dict[str, list[float | None]] = {m: [] for m in methods}
        inner = (slice(2 * k, -2 * k), slice(2 * k, -2 * k))
        for sample, e in zip(defective, base, strict=True):
            moved = self._explain(self.explainer, _shift(sample.image, k, k), methods)
            coded = self._explain(self.explainer, _jpeg(sample.image), methods)
            for m in methods:
                if m not in e.maps:
                    continue
                if m in moved.maps:
                    back = np.roll(moved.maps[m], (-k, -k), (0, 1))
                    shift[m].append(rank_corr(e.maps[m][inner], back[inner]))
                if m in coded.maps:
                    jpeg[m].append(rank_corr(e.maps[m], coded.maps[m]))
        for m in methods:
            figs[m].stability_shift = _mean(shift[m])
            figs[m].stability_jpeg = _mean(jpeg[m])
