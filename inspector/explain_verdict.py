"""The checklist's answer per method: "adds value here", "decoration" or "misleading", by stated rules.

The rules, in order (``RULES`` is printed in the report as written here):
1. misleading, if any of:
   - sanity fails: rank correlation with the map of a randomly re-initialised backbone (or, for
     defect-head methods, of a head refitted on shuffled labels) is SANITY_LIMIT or more: the
     map does not depend on what the model learned;
   - it localises worse than a centred blob that knows nothing of the image;
   - it is unfaithful: deleting what it ranks first lowers the output no more than deleting a
     smooth random map's top pixels (deletion area not below the random reference's).
2. adds value here, if not misleading and all of:
   - localisation: pixel AUROC at least LOCALISATION_MIN;
   - faithful to place: deletion area below that of the same map shifted to a random place;
   - stable: rank correlation at least STABILITY_MIN after a few pixels' shift and after JPEG.
3. decoration, otherwise: it passes sanity but does not earn its place on the screen.
A measure that could not be made (no masks, no defect head) neither passes nor fails its rule;
the reasons list says which rules were not checked.
"""

from __future__ import annotations

from collections.abc import Iterable

from inspector.explain_checks import MethodFigures

SANITY_LIMIT = 0.5
LOCALISATION_MIN = 0.9
STABILITY_MIN = 0.5
ADDS_VALUE, DECORATION, MISLEADING = "adds value here", "decoration", "misleading"

RULES = [
    f"misleading: rank correlation with a random backbone (or shuffled defect labels) >= {SANITY_LIMIT}, "
    "or pixel AUROC below the centred blob's, or deletion area not below the random map's",
    f"adds value here: not misleading, pixel AUROC >= {LOCALISATION_MIN}, deletion area below the shifted map's, "
    f"rank correlation >= {STABILITY_MIN} after a {4} px shift and after JPEG",
    "decoration: otherwise (sane, but not localising, faithful to place and stable enough)",
]


def judge(f: MethodFigures, blob_auroc: float | None) -> tuple[str, list[str]]:
    """The verdict and the reasons behind it for one method's figures."""
    bad: list[str] = []
    unchecked: list[str] = []
    for label, rho in (("random backbone", f.sanity_backbone), ("shuffled labels", f.sanity_labels)):
        if rho is not None and rho >= SANITY_LIMIT:
            bad.append(f"fails sanity: rank correlation {rho:.2f} with the {label}'s map")
    if f.sanity_backbone is None:
        unchecked.append("sanity")
    if f.pixel_auroc is not None and blob_auroc is not None and f.pixel_auroc < blob_auroc:
        bad.append(f"localises worse than a centred blob ({f.pixel_auroc:.3f} < {blob_auroc:.3f})")
    if f.deletion is not None and f.deletion_random is not None and f.deletion >= f.deletion_random:
        bad.append(f"unfaithful: deletion area {f.deletion:.3f} not below random {f.deletion_random:.3f}")
    if bad:
        return MISLEADING, bad
    short: list[str] = []
    if f.pixel_auroc is None:
        unchecked.append("localisation")
    elif f.pixel_auroc < LOCALISATION_MIN:
        short.append(f"pixel AUROC {f.pixel_auroc:.3f} < {LOCALISATION_MIN}")
    if f.deletion is None or f.deletion_shifted is None:
        unchecked.append("faithfulness")
    elif f.deletion >= f.deletion_shifted:
        short.append(f"deletion area {f.deletion:.3f} not below the shifted map's {f.deletion_shifted:.3f}")
    for label, rho in (("shift", f.stability_shift), ("JPEG", f.stability_jpeg)):
        if rho is None:
            unchecked.append(f"stability ({label})")
        elif rho < STABILITY_MIN:
            short.append(f"unstable under {label}: rank correlation {rho:.2f} < {STABILITY_MIN}")
    notes = [f"not checked: {', '.join(unchecked)}"] if unchecked else []
    if short:
        return DECORATION, short + notes
    return ADDS_VALUE, ["passes every checked rule", *notes]


def judge_all(figures: Iterable[MethodFigures], blob_auroc: float | None) -> None:
    """Fills each method's verdict and reasons in place."""
    for f in figures:
        f.verdict, f.reasons = judge(f, blob_auroc)
