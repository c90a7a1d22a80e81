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

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.candidate_scoring import (
    DEFAULT_BUDGET_MS,
    WEIGHTS,
    Candidate,
    CandidateScorer,
    Progress,
    Scored,
)
from inspector.search_evidence import gain_lower_bound
from models.patchcore import PatchCoreConfig

if TYPE_CHECKING:
    from inspector.manifest import Manifest

__all__ = ["DEFAULT_BUDGET_MS", "Candidate", "CandidateScorer", "Scored", "Selection", "SearchOptions", "select_config"]

DEFAULT_LAYERS = PatchCoreConfig().layers
LAYER_SETS: tuple[tuple[tuple[str, ...], int], ...] = (
    (DEFAULT_LAYERS, 8),
    (("blocks.2", "blocks.3"), 8),
    (("blocks.2", "blocks.4"), 8),  # anomalib's pair for efficientnet-lite0
)
# A stride-4 grid scores best on pasted defects and worse on real ones: on pillQC it led the
# criterion (Spearman -0.64 against real AUROC) and, chosen beyond chance, gave 0.9743 against
# the defaults' 0.9974. Sharper maps come from the fine map instead (on by default), which leaves the score
# alone. An engineer may still offer it to the search (``layer_sets``) or pin it (``--layers``).
BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CORESET_RATIOS = (0.1, 0.25)
ELONGATED = 1.3  # an aspect ratio (long / short side) at least this far from square keeps its shape
MIXED_SHARE = 0.25  # portrait and landscape frames both at least this common: the input stays square


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
    incumbent: str | None = None  # the settings used without a search, when the choice needed evidence

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.candidate.name,
            "incumbent": self.incumbent,
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


def signed(x: float) -> str:
    """A gain's bound with its sign; one that rounds to zero keeps its significant digits, since
    only its sign decides (the demo's +0.0000 read as not beyond chance)."""
    return f"{x:+.4f}" if abs(x) >= 5e-5 or x == 0 else f"{x:+.1e}"


def format_table(doc: dict[str, Any]) -> str:
    """The search as ``train`` prints it (and as model.json's ``settings_search`` holds it)."""

    def f(v: Any) -> str:
        return "   -  " if v is None else f"{v:.4f}"

    def gain(s: dict[str, Any]) -> str:
        if s["candidate"]["name"] == doc.get("incumbent"):
            return "default"
        return "-" if s.get("gain_low") is None else signed(s["gain_low"])

    # As wide as the longest name: an own-aspect candidate's is 10 characters longer, and a wider
    # column pushed the cost off the engineer view's window.
    w = max(len("candidate"), *(len(s["candidate"]["name"]) for s in doc["candidates"])) + 1
    lines = [
        f"{'candidate':<{w}} {'img AUROC':>9} {'px AUROC':>9} {'AUPRO':>7} {'score':>7} {'gain>=':>8} {'ms/frame':>9}"
    ]
    for s in doc["candidates"]:
        mark = "*" if s["candidate"]["name"] == doc["chosen"] else (" " if s["within_budget"] else "!")
        lines.append(
            f"{mark}{s['candidate']['name']:<{w - 1}} {f(s['image_auroc']):>9} {f(s['pixel_auroc']):>9} "
            f"{f(s['aupro']):>7} {f(s['criterion']):>7} {gain(s):>8} {s['ms_per_frame']:>9.1f}"
            + ("c" if s.get("coarse_map") else "")
            + ("r" if s.get("cut_coreset_ratio") is not None else "")
        )
    lines.append(f"* chosen: {doc['chosen']}; {doc['reason']}")
    lines.append(
        f"(synthetic defects on {doc['n_eval_good']} held-out good training images, {doc['n_fit_images']} fitted; "
        f"! over the {doc['budget_ms']:g} ms budget; gain>=: 95% lower bound of the score's gain over the default;"
        f" search {doc['search_seconds']:.1f} s)"
    )
    if any(s.get("coarse_map") for s in doc["candidates"]):
        lines.append("(c: within the budget with the score grid's map only; the sharper map would be over it)")
    if any(s.get("cut_coreset_ratio") is not None for s in doc["candidates"]):
        lines.append("(r: within the budget with a smaller memory bank; its own coreset ratio would be over it)")
    return "\n".join(lines)


def _round8(x: float) -> int:
    return max(32, int(round(x / 8)) * 8)


def input_sizes(frame_hw: tuple[float, float]) -> list[tuple[int, int]]:
    """Square 112 px (today's default) and, for frames far from square, their aspect at 112 px
    across. Larger square inputs are left out: on both products the defaults were swept on,
    160 px scored lower than 112 px (docs/measured.md) at twice the cost per frame."""
    h, w = frame_hw
    aspect = h / w
    sizes = [(112, 112)]
    if max(aspect, 1 / aspect) >= ELONGATED:
        short = 112
        sizes.append((_round8(short * aspect), short) if aspect > 1 else (short, _round8(short / aspect)))
    return sizes


def training_input_hw(sizes: Sequence[tuple[int, int]], across: int = 112) -> tuple[int, int]:
    """The input (height, width) for frames of these (width, height) sizes, without a search.

    Issue 11, rules stated before they were checked: every training frame counts (their headers
    only) and medians stand for them, so no single frame decides (the first frame's aspect did:
    on a product whose frames range from 1:1 to 2.8:1 that was arbitrary).
    - One orientation (or square-ish): the median aspect, ``across`` px on the short side and
      the long side in proportion when it is elongated (``input_sizes``): ksdd's 250x627 frames
      train at 280x112, pillQC and crack at 112x112, as before.
    - Elongated frames of both orientations, each at least ``MIXED_SHARE`` of the set: no
      elongated input serves both (a 2.8:1 landscape frame in a 2.8:1 portrait input is squashed
      7.8x), so the input is square, and its side is ``across`` x the median long/short ratio,
      so that the median frame's short side keeps about ``across`` px, as ksdd's does.
    Every frame is squashed to the input. Chosen on the variable-aspect proxies of
    ``scripts/bench_variable_aspect.py``: ksdd *training* crops with pasted synthetic defects
    (this rule 0.783 image AUROC, a square 112 px input 0.694, a 312x112 one 0.742, letterboxing
    0.657) and crack's test crops (0.9970, within 0.0002 of the best rule). Checked on ksdd's
    test crops, and not confirmed there: 0.743 against 0.702 for 112 px square, but 0.904 for a
    312x112 input, since ksdd's cracks run across the part (docs/measured.md, "Settings chosen per product").
    """
    if not sizes:
        raise ValueError("no frame sizes")
    aspects = np.array([h / w for w, h in sizes], np.float64)
    if mixed_orientation(sizes):
        side = _round8(across * float(np.median(np.maximum(aspects, 1 / aspects))))
        return side, side
    median = float(np.exp(np.median(np.log(aspects))))
    return input_sizes((median * 1000.0, 1000.0))[-1]


def mixed_orientation(sizes: Sequence[tuple[int, int]]) -> bool:
    """Elongated frames of both orientations, each at least ``MIXED_SHARE`` of these (width,
    height) sizes: no one elongated input serves them."""
    aspects = np.array([h / w for w, h in sizes], np.float64)
    portrait = float((aspects >= ELONGATED).mean())
    landscape = float((aspects <= 1 / ELONGATED).mean())
    return portrait >= MIXED_SHARE and landscape >= MIXED_SHARE


def training_keeps_aspect(sizes: Sequence[tuple[int, int]]) -> bool:
    """Whether frames of these (width, height) sizes keep their own aspect, without a search.

    Yes for mixed orientations (``mixed_orientation``): each frame then gets the pixels of
    ``training_input_hw``'s square at its own aspect instead of being squashed into it. The rule
    was written and measured before it was built (``scripts/bench_keep_aspect.py``): chosen on
    ksdd's variable-aspect *training* crops with pasted defects (image AUROC 0.781 squashed,
    0.810 at its own aspect), and checked against a rule written before the check ran on the
    test crops: ksdd 0.745 -> 0.839 image, 0.873 -> 0.908 pixel AUROC; crack 0.9970 -> 0.9987.
    Frames of one orientation keep today's input (their aspect already kept by its shape).
    """
    return bool(sizes) and mixed_orientation(sizes)


def default_input_hw(manifest: Manifest, root: str | Path) -> tuple[int | None, int | None]:
    """The input size without a search (``training_input_hw``); (None, None) for 112x112."""
    h, w, _ = default_input(manifest, root)
    return h, w


def default_input(manifest: Manifest, root: str | Path) -> tuple[int | None, int | None, bool]:
    """The input size without a search (``training_input_hw``; (None, None) for 112x112) and
    whether each frame keeps its own aspect (``training_keeps_aspect``).

    Only the files' headers are read (PIL opens them lazily), so a few thousand frames cost well
    under a second. The rules are geometric, not tuned on any test split.
    """
    from PIL import Image

    from inspector.manifest import require_training_items, resolve

    sizes = []
    for it in require_training_items(manifest):
        try:
            with Image.open(resolve(root, it.path)) as im:
                sizes.append(im.size)
        except OSError:
            continue  # training reports the unreadable file with its own clear message
    if not sizes:
        return None, None, False
    hw, keep = training_input_hw(sizes), training_keeps_aspect(sizes)
    if hw == (112, 112):
        return None, None, keep
    return hw[0], hw[1], keep


@dataclass
class SearchOptions:
    """How ``train`` searches: what the engineer pinned, the time budget, and the sample sizes."""

    pinned: dict[str, Any] = field(default_factory=dict)
    budget_ms: float = DEFAULT_BUDGET_MS
    allow_over_budget: bool = False
    n_fit: int = 40
    n_eval: int = 12
    backbones: tuple[str, ...] = BACKBONES
    layer_sets: tuple[tuple[tuple[str, ...], int], ...] = LAYER_SETS
    ratios: tuple[float, ...] = CORESET_RATIOS
    require_evidence: bool = True  # the settings used without a search stay unless beaten beyond chance
    cut_bank: bool = True  # a bank too large for the budget is cut before the settings change

    def sample_size(self) -> int:
        return self.n_fit + self.n_eval


# Cost measurements move by about a fifth between runs on a 2-core host (docs/measured.md), so a candidate
# displaces the incumbent on cost alone only when it takes under this share of its time.
CHEAPER_BY = 0.8


def pick(
    scored: Sequence[Scored], allow_over: bool, tolerance: float, incumbent: Scored | None = None
) -> Scored | None:
    """The best criterion among allowed candidates; within ``tolerance`` of it, the cheapest (the
    incumbent, when it is among those, unless another takes under ``CHEAPER_BY`` of its time).

    With a few dozen synthetic images, differences under half a point are noise, and the
    cheaper model then serves the line better. With an ``incumbent`` (the settings ``train``
    uses without a search, scored and within budget), a candidate may replace it only when its
    gain is beyond chance (``significant``); otherwise the incumbent stays. On pillQC the best
    raw score had chosen lite2 (0.9903 on real defects against the defaults' 0.9974).
    """
    ok = [s for s in scored if s.criterion is not None and (s.within_budget or allow_over)]
    if incumbent is not None and incumbent.criterion is not None and (incumbent.within_budget or allow_over):
        ok = [s for s in ok if s is incumbent or significant(s, incumbent)]
    if not ok:
        return None
    best = max(s.criterion for s in ok if s.criterion is not None)
    near = [s for s in ok if s.criterion is not None and s.criterion >= best - tolerance]
    cheapest = min(near, key=lambda s: s.ms_per_frame)
    kept = incumbent is not None and any(s is incumbent for s in near)
    if kept and incumbent is not None and cheapest.ms_per_frame > CHEAPER_BY * incumbent.ms_per_frame:
        # Within the tolerance, a candidate must be clearly cheaper to displace the incumbent: the
        # demo's lite2 (13.4 ms) displaced lite0 (13.5 ms) in one run and not in the next.
        return incumbent
    return cheapest


def significant(challenger: Scored, incumbent: Scored) -> bool:
    """Whether ``challenger`` beats ``incumbent`` beyond chance (and records the bound it got).

    The one-sided 95% lower bound of the criterion gain, by a paired bootstrap over the search's
    evaluation images, must be above zero. A candidate without per-image evidence never is.
    """
    if challenger is incumbent:
        return False
    if challenger.gain_low is None:
        if challenger.evidence is None or incumbent.evidence is None:
            return False
        challenger.gain_low = gain_lower_bound(challenger.evidence, incumbent.evidence, WEIGHTS)
    return challenger.gain_low > 0


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
    tolerance: float = 0.01,
    require_evidence: bool = True,
    backbones: Sequence[str] = BACKBONES,
    layer_sets: Sequence[tuple[tuple[str, ...], int]] = LAYER_SETS,
    ratios: Sequence[float] = CORESET_RATIOS,
    cut_bank: bool = True,
    progress: Progress | None = None,
) -> tuple[PatchCoreConfig, Selection]:
    """Chooses settings for ``images`` (good training images, RGB uint8); returns the config and why.

    ``pinned`` holds the settings the engineer fixed (keys of PatchCoreConfig: backbone, layers,
    input_size, input_width, feature_stride, coreset_ratio, keep_aspect): only candidates that agree are tried.
    Costs are measured with a memory bank of the size the final model will have, fitted on
    ``n_final`` images (default: all of ``images``). With ``require_evidence`` (the default) the
    settings used without a search stay unless a candidate beats them beyond chance (``pick``).
    With ``cut_bank`` (unless the coreset ratio is pinned) a candidate over the budget only
    because of its memory bank's size gets a smaller bank instead of being refused
    (``inspector.candidate_scoring._within_budget``).
    """
    tic = time.perf_counter()
    base = base or PatchCoreConfig()
    pinned = dict(pinned or {})
    scorer = CandidateScorer(
        images,
        base,
        n_fit=n_fit,
        n_eval=n_eval,
        n_final=n_final,
        budget_ms=budget_ms,
        allow_over_budget=allow_over_budget,
        may_cut_bank=cut_bank and "coreset_ratio" not in pinned,
        progress=progress,
    )
    # The rule used without a search (``training_input_hw``, ``training_keeps_aspect``) on the
    # sampled frames, and square 112 px squashed.
    frame_sizes = [(im.shape[1], im.shape[0]) for im in images]
    rule = (training_input_hw(frame_sizes), training_keeps_aspect(frame_sizes))
    inputs = [(hw, keep) for hw, keep in dict.fromkeys([rule, ((112, 112), False)]) if _agrees(hw, pinned)]
    if "input_size" in pinned and not inputs:
        h = int(pinned["input_size"])
        inputs = [((h, int(pinned.get("input_width") or h)), rule[1])]
    if "keep_aspect" in pinned:
        inputs = list(dict.fromkeys((hw, bool(pinned["keep_aspect"])) for hw, _ in inputs))
    sizes = [hw for hw, _ in inputs]
    sets = [(ls, st) for ls, st in layer_sets if _agrees_layers(ls, st, pinned)]
    if "layers" in pinned and not sets:
        sets = [(tuple(pinned["layers"]), int(pinned.get("feature_stride") or 8))]
    bbs = [pinned["backbone"]] if "backbone" in pinned else list(backbones)
    rts = [float(pinned["coreset_ratio"])] if "coreset_ratio" in pinned else list(ratios)
    ls0, st0 = sets[0]
    r0 = rts[0]
    # The first candidate of every list is what ``train`` uses without a search: the incumbent.
    default = scorer.score([Candidate(bbs[0], ls0, sizes[0], st0, r0, inputs[0][1])], "size")[0]
    incumbent = default if require_evidence else None

    def run(stage: str, cands: list[Candidate]) -> Scored | None:
        return pick(scorer.score(cands, stage), allow_over_budget, tolerance, incumbent)

    best = run("size", [Candidate(bbs[0], ls0, hw, st0, r0, keep) for hw, keep in inputs])
    hw, keep = (best.candidate.input_hw, best.candidate.keep_aspect) if best else inputs[0]
    best = run("stages", [Candidate(bbs[0], ls, hw, st, r0, keep) for ls, st in sets]) or best
    ls, st = (best.candidate.layers, best.candidate.feature_stride) if best else (ls0, st0)
    best = run("backbone", [Candidate(b, ls, hw, st, r0, keep) for b in bbs]) or best
    bb = best.candidate.backbone if best else bbs[0]
    run("coreset", [Candidate(bb, ls, hw, st, r, keep) for r in rts])
    scored = scorer.scored
    if progress:  # the greedy stages' total is known only now: the bar ends full, not at n/(n+1)
        progress("settings search", len(scored), len(scored))
    chosen = pick(scored, allow_over_budget, tolerance, incumbent)
    refused = [s for s in scored if not s.within_budget]
    if chosen is None:
        cheapest = min(scored, key=lambda s: s.ms_per_frame)
        raise BudgetError(
            f"every candidate is over the {budget_ms:g} ms/frame budget (cheapest: {cheapest.candidate.name}, "
            f"{cheapest.ms_per_frame:.1f} ms); raise it with --budget-ms or allow it with --allow-over-budget"
        )
    n_scored = sum(s.criterion is not None for s in scored)
    within = f" within {budget_ms:g} ms/frame" if not allow_over_budget else ""
    top = max(s.criterion for s in scored if s.criterion is not None and (s.within_budget or allow_over_budget))
    if incumbent is not None and chosen is incumbent:
        beaten = sum(s.gain_low is not None and s.gain_low > 0 for s in scored if s is not incumbent)
        why = (
            "no candidate beat them beyond chance"
            if not beaten
            else f"{beaten} beat them beyond chance but by less than {tolerance:g}, and none of those takes"
            f" under {CHEAPER_BY:.0%} of their time per frame"
        )
        reason = (
            f"kept the settings used without a search ({chosen.criterion:.4f}; best {top:.4f} among {n_scored}"
            f" candidates scored{within}): {why} (paired bootstrap over the synthetic defects, one-sided 95%)"
        )
    elif incumbent is not None and chosen.gain_low is not None:
        reason = (
            f"beat the settings used without a search beyond chance (gain's 95% lower bound {signed(chosen.gain_low)});"
            f" synthetic-defect score {chosen.criterion:.4f}, best {top:.4f} among {n_scored} candidates"
            f" scored{within} (the cheapest within {tolerance:g} of the best of those beyond chance)"
        )
    else:
        reason = (
            f"best synthetic-defect score ({chosen.criterion:.4f}) among {n_scored} "
            f"candidates scored{within} (the cheapest within {tolerance:g} of the best)"
        )
        if require_evidence and not default.within_budget and not allow_over_budget:
            # 1.2x: the measure moves by about a fifth between runs on a 2-core host (docs/measured.md).
            keep = math.ceil(default.ms_per_frame * 1.2)
            reason += (
                f"; the settings used without a search are over budget ({default.ms_per_frame:.1f} ms per frame;"
                f" --budget-ms {keep} or --allow-over-budget keeps them in the running)"
            )
    if refused:
        reason += (
            f"; {len(refused)} refused over budget"
            if not allow_over_budget
            else f"; {len(refused)} over budget, allowed"
        )
    config = chosen.candidate.config(base)
    if chosen.cut_coreset_ratio is not None:
        config = replace(config, coreset_ratio=chosen.cut_coreset_ratio)
        reason += (
            f"; with coreset ratio {chosen.candidate.coreset_ratio:g} these settings would take"
            f" {chosen.uncut_ms:.1f} ms per frame, over the budget, so the memory bank is cut to"
            f" {chosen.bank_rows:,} rows (coreset ratio {chosen.cut_coreset_ratio:.3g}, {chosen.ms_per_frame:.1f} ms;"
            " --coreset-ratio pins it, --budget-ms or --allow-over-budget keeps the full bank)"
        )
    if chosen.coarse_map:
        config = replace(config, map_layers=None)
        reason += (
            f"; the sharper anomaly map would take {chosen.sharp_map_ms:.1f} ms per frame with these settings,"
            f" over the budget, so the score grid's map is built ({chosen.ms_per_frame:.1f} ms; raise --budget-ms"
            " or --allow-over-budget for the sharper one)"
        )
    selection = Selection(
        chosen,
        scored,
        budget_ms,
        allow_over_budget,
        reason,
        time.perf_counter() - tic,
        len(scorer.data.fit),
        int((scorer.data.labels == 0).sum()),
        int(scorer.data.labels.sum()),
        pinned,
        incumbent.candidate.name if incumbent is not None else None,
    )
    return config, selection


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
