"""PatchCore settings chosen per product, from its good training images only.

A new product comes without defective images, and settings swept on other products do not carry
over (squashing a 250x627 commutator to 112x112 px loses its hairline cracks). So ``train``
fits candidates on part of the product's good training images, pastes synthetic defects with
masks (``inspector.synthetic_defects``) onto the other part, and scores each candidate by how
well it finds them: image AUROC, pixel AUROC and AUPRO. Each candidate's cost per frame with
Grad-CAM is measured on this machine; one over the station's budget is refused unless the
engineer allows it. No test image and no calibration image is ever seen.

The search is greedy, in stages, to stay cheap: input size (aspect kept for elongated frames),
then stage sets, then backbones, then coreset ratio. Backbone features are computed once per
backbone and size and shared by every candidate of that group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import torch

from inspector import metrics
from inspector.preprocess import to_batch
from inspector.synthetic_defects import defective_set
from models.patchcore import PatchCore, PatchCoreConfig
from models.patchcore.anomaly_map import anomaly_map

DEFAULT_BUDGET_MS = 33.0  # the station shows 30 frames/s with Grad-CAM
DEFAULT_LAYERS = PatchCoreConfig().layers
LAYER_SETS: tuple[tuple[tuple[str, ...], int], ...] = (
    (DEFAULT_LAYERS, 8),
    (("blocks.2", "blocks.3"), 8),
    (("blocks.2", "blocks.4"), 8),  # anomalib's pair for efficientnet-lite0
    (("pixels", "blocks.1", "blocks.2"), 4),  # a stride-4 grid: sharper maps for specks and hairlines
)
BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CORESET_RATIOS = (0.1, 0.25)
# Criterion weights, fixed before any measurement: detection first, localisation second.
WEIGHTS = {"image_auroc": 0.5, "pixel_auroc": 0.25, "aupro": 0.25}
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Candidate:
    backbone: str
    layers: tuple[str, ...]
    input_hw: tuple[int, int]
    feature_stride: int | None = 8
    coreset_ratio: float = 0.1

    @property
    def name(self) -> str:
        short = self.backbone.replace("efficientnet_", "")
        h, w = self.input_hw
        return f"{short} {'+'.join(self.layers)} {h}x{w} s{self.feature_stride} c{self.coreset_ratio:g}"

    def config(self, base: PatchCoreConfig) -> PatchCoreConfig:
        h, w = self.input_hw
        return replace(
            base,
            backbone=self.backbone,
            layers=self.layers,
            input_size=h,
            input_width=None if h == w else w,
            feature_stride=self.feature_stride,
            coreset_ratio=self.coreset_ratio,
        )


@dataclass
class Scored:
    """One candidate's synthetic-defect figures and cost; ``criterion`` None when not evaluated."""

    candidate: Candidate
    ms_per_frame: float
    within_budget: bool
    image_auroc: float | None = None
    pixel_auroc: float | None = None
    aupro: float | None = None
    bank_rows: int | None = None  # of the final model, for the cost
    stage: str = ""

    @property
    def criterion(self) -> float | None:
        if self.image_auroc is None:
            return None
        return sum(w * float(getattr(self, k) or 0.0) for k, w in WEIGHTS.items())

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["candidate"] = {**asdict(self.candidate), "name": self.candidate.name}
        d["criterion"] = self.criterion
        return d


@dataclass
class Selection:
    chosen: Scored
    scored: list[Scored]
    budget_ms: float
    allow_over_budget: bool
    reason: str
    seconds: float
    n_fit: int
    n_eval_good: int
    n_eval_defect: int
    pinned: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.candidate.name,
            "reason": self.reason,
            "criterion": dict(WEIGHTS),
            "budget_ms": self.budget_ms,
            "allow_over_budget": self.allow_over_budget,
            "pinned": self.pinned,
            "search_seconds": round(self.seconds, 2),
            "n_fit_images": self.n_fit,
            "n_eval_good": self.n_eval_good,
            "n_eval_synthetic_defects": self.n_eval_defect,
            "candidates": [s.to_json() for s in self.scored],
        }

    def table(self) -> str:
        return format_table(self.to_json())


def format_table(doc: dict[str, Any]) -> str:
    """The search as ``train`` prints it (and as model.json's ``settings_search`` holds it)."""

    def f(v: Any) -> str:
        return "   -  " if v is None else f"{v:.4f}"

    lines = [f"{'candidate':<52} {'img AUROC':>9} {'px AUROC':>9} {'AUPRO':>7} {'score':>7} {'ms/frame':>9}"]
    for s in doc["candidates"]:
        mark = "*" if s["candidate"]["name"] == doc["chosen"] else (" " if s["within_budget"] else "!")
        lines.append(
            f"{mark}{s['candidate']['name']:<51} {f(s['image_auroc']):>9} {f(s['pixel_auroc']):>9} "
            f"{f(s['aupro']):>7} {f(s['criterion']):>7} {s['ms_per_frame']:>9.1f}"
        )
    lines.append(f"* chosen: {doc['chosen']}; {doc['reason']}")
    lines.append(
        f"(synthetic defects on {doc['n_eval_good']} held-out good training images, {doc['n_fit_images']} fitted; "
        f"! over the {doc['budget_ms']:g} ms budget; search {doc['search_seconds']:.1f} s)"
    )
    return "\n".join(lines)


def _round8(x: float) -> int:
    return max(32, int(round(x / 8)) * 8)


def input_sizes(frame_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Square 112 px (today's default) and, for frames far from square, their aspect at 112 px
    across; square frames also try 160 px."""
    h, w = frame_hw
    aspect = h / w
    sizes = [(112, 112)]
    if max(aspect, 1 / aspect) < 1.3:
        sizes.append((160, 160))
    else:
        short = 112
        hw = (_round8(short * aspect), short) if aspect > 1 else (short, _round8(short / aspect))
        sizes.append(hw)
    return sizes


@dataclass
class SearchOptions:
    """How ``train`` searches: what the engineer pinned, the time budget, and the sample sizes."""

    pinned: dict[str, Any] = field(default_factory=dict)
    budget_ms: float = DEFAULT_BUDGET_MS
    allow_over_budget: bool = False
    n_fit: int = 40
    n_eval: int = 12
    backbones: tuple[str, ...] = BACKBONES

    def sample_size(self) -> int:
        return self.n_fit + self.n_eval


class _Group:
    """One backbone at one input size: the model and the cached stage maps of every image."""

    def __init__(self, backbone: str, hw: tuple[int, int], base: PatchCoreConfig, data: _Data) -> None:
        union = ("pixels", "blocks.1", "blocks.2", "blocks.3", "blocks.4")
        self.hw = hw
        self.model = PatchCore(replace(base, backbone=backbone, layers=union, input_size=hw[0], input_width=hw[1]))
        dev = self.model.mean.device
        with torch.inference_mode():
            self.fit_feats = [
                self._stages(to_batch(data.fit[i : i + 16], hw).to(dev)) for i in range(0, len(data.fit), 16)
            ]
            self.eval_feats = [
                self._stages(to_batch(data.eval[i : i + 16], hw).to(dev)) for i in range(0, len(data.eval), 16)
            ]
        self.probe = to_batch(data.eval[:1], hw).to(dev)

    def _stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.model
        return m.extractor(m.normalize(x).contiguous(memory_format=torch.channels_last))

    def use(self, cand: Candidate, base: PatchCoreConfig) -> PatchCore:
        """The group's model set to ``cand`` (stage set, stride, ratio), fitted from cached maps."""
        m = self.model
        m.config = replace(cand.config(base), input_size=self.hw[0], input_width=self.hw[1])
        m.extractor.layers = list(cand.layers)
        m.fit_embedded(m.embed_features(f, self.hw) for f in self.fit_feats)
        return m


class _Data:
    def __init__(self, fit: list[np.ndarray], eval_good: list[np.ndarray], seed: int) -> None:
        bad, masks, _ = defective_set(eval_good, fit, 2, seed)
        self.fit = fit
        self.eval = [*eval_good, *bad]
        self.labels = np.array([0] * len(eval_good) + [1] * len(bad))
        self.grid = _grid(eval_good[0].shape)
        empty = np.zeros(eval_good[0].shape[:2], np.uint8)
        self.masks = np.stack([_to(m, self.grid) > 127 for m in [empty] * len(eval_good) + masks])
        self.shapes = [im.shape[:2] for im in self.eval]


def _grid(shape: tuple[int, ...], long_side: int = 128) -> tuple[int, int]:
    f = min(1.0, long_side / max(shape[0], shape[1]))
    return max(8, round(shape[0] * f)), max(8, round(shape[1] * f))


def _to(m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return m if m.shape[:2] == hw else cv2.resize(m, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def measure_ms(model: PatchCore, probe: torch.Tensor, repeats: int = 3) -> float:
    """Milliseconds for one frame's score, anomaly map and Grad-CAM: the station's live path.

    Two upper bounds of the time on an idle machine, the smaller kept: the fastest wall time of
    ``repeats`` runs, and the CPU time of the same work on one thread. Other jobs on a shared
    CPU inflate the first (six helpers at once made 8 ms read 33 ms) but hardly the second, and
    more threads only make the work faster than one thread's CPU time.
    """
    from models.explain.gradcam import anomaly_grad_cam  # Captum, only when a search runs

    anomaly_grad_cam(model, probe)
    wall = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        anomaly_grad_cam(model, probe)
        wall = min(wall, time.perf_counter() - tic)
    threads = torch.get_num_threads()
    cpu = float("inf")
    if model.mean.device.type == "cpu":
        torch.set_num_threads(1)
        try:
            for _ in range(repeats):
                tic = time.thread_time()
                anomaly_grad_cam(model, probe)
                cpu = min(cpu, time.thread_time() - tic)
        finally:
            torch.set_num_threads(threads)
    return min(wall, cpu) * 1000


def _timing_bank(model: PatchCore, probe_feats: dict[str, torch.Tensor], hw: tuple[int, int], rows: int) -> None:
    """A stand-in bank of the final model's size: search time depends on its shape, not its values."""
    model.channel_mean, model.channel_scale = model.channel_mean.new_empty(0), model.channel_scale.new_empty(0)
    c = model.embed_features(probe_feats, hw).shape[1]
    g = torch.Generator().manual_seed(0)
    dev = model.mean.device
    model.channel_mean, model.channel_scale = torch.zeros(c, device=dev), torch.ones(c, device=dev)
    model.memory_bank = torch.randn(rows, c, generator=g).to(dev)
    model.bank_sq = (model.memory_bank * model.memory_bank).sum(1)
    k = min(model.config.num_neighbours, rows)
    model.bank_neighbours = torch.randint(0, rows, (rows, k), generator=g).to(dev)


def _evaluate(
    group: _Group,
    cand: Candidate,
    base: PatchCoreConfig,
    data: _Data,
    budget_ms: float,
    allow_over: bool,
    stage: str,
    n_final: int,
) -> Scored:
    m = group.model
    m.config = replace(cand.config(base), input_size=group.hw[0], input_width=group.hw[1])
    m.extractor.layers = list(cand.layers)
    stride = cand.feature_stride or 8
    rows = max(1, round(cand.coreset_ratio * n_final * -(-group.hw[0] // stride) * -(-group.hw[1] // stride)))
    with torch.inference_mode():
        probe_feats = group._stages(group.probe)
    _timing_bank(m, probe_feats, group.hw, rows)
    ms = measure_ms(m, group.probe)
    s = Scored(cand, round(ms, 2), ms <= budget_ms, bank_rows=rows, stage=stage)
    if not s.within_budget and not allow_over:
        return s  # refused: not worth fitting
    model = group.use(cand, base)
    scores, maps = [], []
    with torch.inference_mode():
        for f in group.eval_feats:
            score, patch = model.score_embedding(model.embed_features(f, group.hw))
            scores.append(score.float().cpu().numpy())
            maps += [_to(a, data.grid) for a in anomaly_map(patch, group.hw, model.config.sigma).float().cpu().numpy()]
    sc, mp = np.concatenate(scores), np.stack(maps)
    s.image_auroc = metrics.image_auroc(sc, data.labels)
    s.pixel_auroc = metrics.pixel_auroc(mp, data.masks)
    s.aupro = metrics.aupro(mp, data.masks, steps=100)
    return s


def pick(scored: Sequence[Scored], allow_over: bool, tolerance: float) -> Scored | None:
    """The best criterion among allowed candidates; within ``tolerance`` of it, the cheapest.

    With a few dozen synthetic images, differences under half a point are noise, and the
    cheaper model then serves the line better.
    """
    ok = [s for s in scored if s.criterion is not None and (s.within_budget or allow_over)]
    if not ok:
        return None
    best = max(s.criterion for s in ok if s.criterion is not None)
    near = [s for s in ok if s.criterion is not None and s.criterion >= best - tolerance]
    return min(near, key=lambda s: s.ms_per_frame)


def select_config(
    images: Sequence[np.ndarray],
    *,
    base: PatchCoreConfig | None = None,
    pinned: dict[str, Any] | None = None,
    budget_ms: float = DEFAULT_BUDGET_MS,
    allow_over_budget: bool = False,
    n_fit: int = 40,
    n_eval: int = 12,
    n_final: int | None = None,
    tolerance: float = 0.005,
    backbones: Sequence[str] = BACKBONES,
    progress: Progress | None = None,
) -> tuple[PatchCoreConfig, Selection]:
    """Chooses settings for ``images`` (good training images, RGB uint8); returns the config and why.

    ``pinned`` holds the settings the engineer fixed (keys of PatchCoreConfig: backbone, layers,
    input_size, input_width, feature_stride, coreset_ratio): only candidates that agree are tried.
    Costs are measured with a memory bank of the size the final model will have, fitted on
    ``n_final`` images (default: all of ``images``).
    """
    tic = time.perf_counter()
    base = base or PatchCoreConfig()
    n_final = n_final or len(images)
    pinned = dict(pinned or {})
    if len(images) < 4:
        raise ValueError("the settings search needs at least 4 good training images")
    order = np.random.default_rng(base.seed).permutation(len(images))
    n_ev = max(2, min(n_eval, len(images) // 4))
    eval_good = [images[i] for i in order[:n_ev]]
    fit = [images[i] for i in order[n_ev : n_ev + n_fit]]
    data = _Data(fit, eval_good, base.seed)
    frame_hw = tuple(int(v) for v in np.median([im.shape[:2] for im in images], axis=0))
    sizes = [hw for hw in input_sizes((frame_hw[0], frame_hw[1])) if _agrees(hw, pinned)]
    if "input_size" in pinned and not sizes:
        h = int(pinned["input_size"])
        sizes = [(h, int(pinned.get("input_width") or h))]
    layer_sets = [(ls, st) for ls, st in LAYER_SETS if _agrees_layers(ls, st, pinned)]
    if "layers" in pinned and not layer_sets:
        layer_sets = [(tuple(pinned["layers"]), pinned.get("feature_stride", 8))]
    bbs = [pinned["backbone"]] if "backbone" in pinned else list(backbones)
    ratios = [float(pinned["coreset_ratio"])] if "coreset_ratio" in pinned else list(CORESET_RATIOS)
    groups: dict[tuple[str, tuple[int, int]], _Group] = {}
    scored: list[Scored] = []
    step = [0]

    def run(stage: str, cands: list[Candidate]) -> Scored | None:
        for c in cands:
            if any(s.candidate == c for s in scored):
                continue
            key = (c.backbone, c.input_hw)
            if key not in groups:
                groups[key] = _Group(c.backbone, c.input_hw, base, data)
            scored.append(_evaluate(groups[key], c, base, data, budget_ms, allow_over_budget, stage, n_final))
            step[0] += 1
            if progress:
                progress("settings search", step[0], step[0] + 1)
        stage_scored = [s for s in scored if s.candidate in cands]
        return pick(stage_scored, allow_over_budget, tolerance)

    ls0, st0 = layer_sets[0]
    r0 = ratios[0]
    best = run("size", [Candidate(bbs[0], ls0, hw, st0, r0) for hw in sizes])
    hw = best.candidate.input_hw if best else sizes[0]
    best = run("stages", [Candidate(bbs[0], ls, hw, st, r0) for ls, st in layer_sets]) or best
    ls, st = (best.candidate.layers, best.candidate.feature_stride) if best else (ls0, st0)
    best = run("backbone", [Candidate(b, ls, hw, st, r0) for b in bbs]) or best
    bb = best.candidate.backbone if best else bbs[0]
    run("coreset", [Candidate(bb, ls, hw, st, r) for r in ratios])
    chosen = pick(scored, allow_over_budget, tolerance)
    refused = [s for s in scored if not s.within_budget]
    if chosen is None:
        cheapest = min(scored, key=lambda s: s.ms_per_frame)
        raise BudgetError(
            f"every candidate is over the {budget_ms:g} ms/frame budget (cheapest: {cheapest.candidate.name}, "
            f"{cheapest.ms_per_frame:.1f} ms); raise it with --budget-ms or allow it with --allow-over-budget"
        )
    reason = (
        f"best synthetic-defect score ({chosen.criterion:.4f}) among {sum(s.criterion is not None for s in scored)} "
        f"candidates scored{' within ' + format(budget_ms, 'g') + ' ms/frame' if not allow_over_budget else ''}"
        f" (the cheapest within {tolerance:g} of the best)"
    )
    if refused:
        reason += (
            f"; {len(refused)} refused over budget"
            if not allow_over_budget
            else f"; {len(refused)} over budget, allowed"
        )
    selection = Selection(
        chosen,
        scored,
        budget_ms,
        allow_over_budget,
        reason,
        time.perf_counter() - tic,
        len(fit),
        len(eval_good),
        int(data.labels.sum()),
        pinned,
    )
    return chosen.candidate.config(base), selection


class BudgetError(ValueError):
    """No candidate meets the station's time budget."""


def _agrees(hw: tuple[int, int], pinned: dict[str, Any]) -> bool:
    if "input_size" in pinned and hw[0] != int(pinned["input_size"]):
        return False
    if "input_width" in pinned and hw[1] != int(pinned["input_width"] or hw[0]):
        return False
    return True


def _agrees_layers(layers: tuple[str, ...], stride: int, pinned: dict[str, Any]) -> bool:
    if "layers" in pinned and tuple(pinned["layers"]) != layers:
        return False
    return not ("feature_stride" in pinned and pinned["feature_stride"] != stride)
