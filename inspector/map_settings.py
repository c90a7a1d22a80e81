"""One line that says which anomaly map a model draws, for the engineer view and ``train``.

Why: since issue 11 the map is not the score's grid unless ``--coarse-map``; an engineer
comparing two versions should see which map each draws, not only its score settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe_map(cfg: Mapping[str, Any]) -> str:
    """``cfg`` is a model.json "config" object (PatchCoreConfig.to_json), possibly from an old file."""
    stride = cfg.get("feature_stride") or 8
    layers = cfg.get("map_layers")
    map_stride = cfg.get("map_stride") or 4
    if not layers or int(map_stride) >= int(stride):
        return f"anomaly map: the score's grid (every {stride} px), sigma {cfg.get('sigma', 4.0):g}"
    stages = "auto stages" if layers == "auto" else "+".join(str(x) for x in layers)
    fine = f"a finer grid every {map_stride} px ({stages})"
    focus = cfg.get("map_focus")
    where = (
        f", searched under the frame's highest {float(focus):.0%} of coarse scores"
        if focus is not None and 0 < float(focus) < 1
        else ", searched everywhere"
    )
    if cfg.get("map_blend") == "mean":
        return f"anomaly map: mean of the score's grid (every {stride} px) and {fine}{where}"
    return f"anomaly map: {fine} alone{where}"
