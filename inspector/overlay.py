"""One rendering of anomaly maps for the CLI, the app and the audit export.

The colour range is fixed by the model's calibration (``Thresholds.map_low``/``map_high``), not
stretched to each frame's maximum, so a good part looks calm and two frames compare at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

COLORMAP = cv2.COLORMAP_JET
# Grad-CAM gets its own palette so an operator never mistakes it for the calibrated anomaly map.
GRADCAM_COLORMAP = cv2.COLORMAP_VIRIDIS


def map_style(method: str, decision: float) -> tuple[int, float | None]:
    """Palette and outline level of one method's panel, the same in the app, the CLI and the auditor.

    Only the anomaly map is in score units, so only it is outlined at the decision threshold; an
    explanation's map is a shape scaled to the score, and outlining it at the threshold would draw
    a boundary that means nothing. Explanations keep their own palette.
    """
    return (COLORMAP, decision) if method == "anomaly" else (GRADCAM_COLORMAP, None)


def normalise(amap: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map values to [0, 1] over a fixed range."""
    if high <= low:
        raise ValueError(f"overlay range must have high > low, got [{low}, {high}]")
    return np.clip((amap.astype(np.float32) - low) / (high - low), 0.0, 1.0)


def colourise(unit: np.ndarray, colormap: int = COLORMAP) -> np.ndarray:
    """[0, 1] map to RGB uint8 with the shared colour map (or ``colormap``)."""
    if unit.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {unit.shape}")
    bgr = cv2.applyColorMap((unit * 255).astype(np.uint8), colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def palette(colormap: int = COLORMAP) -> np.ndarray:
    """The 256 RGB colours of a colour map, low to high (for a legend)."""
    return colourise(np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :], colormap)[0]


def overlay(
    image: np.ndarray,
    amap: np.ndarray,
    low: float,
    high: float,
    *,
    opacity: float = 0.45,
    contour_level: float | None = None,
    contour_colour: tuple[int, int, int] = (255, 255, 255),
    colormap: int = COLORMAP,
) -> np.ndarray:
    """Blends a map over an RGB uint8 image; pixels below ``low`` stay untinted.

    ``contour_level`` (in map units, usually the decision threshold) outlines the region above it.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("overlay needs an RGB uint8 image")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    h, w = image.shape[:2]
    amap = np.asarray(amap, dtype=np.float32)  # a station keeps its maps as float16
    if amap.shape != (h, w):
        amap = cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR)
    unit = normalise(amap, low, high)
    colour = colourise(unit, colormap).astype(np.float32)
    alpha = (opacity * np.clip(unit * 3.0, 0.0, 1.0))[..., None]  # calm areas stay see-through
    out = image.astype(np.float32) * (1 - alpha) + colour * alpha
    result = np.clip(out, 0, 255).astype(np.uint8)
    if contour_level is not None:
        region = (amap >= contour_level).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(result, contours, -1, contour_colour, max(1, min(h, w) // 150), cv2.LINE_AA)
    return result


def colour_bar(
    height: int, low: float, high: float, threshold: float | None = None, width: int = 56, colormap: int = COLORMAP
) -> np.ndarray:
    """A vertical colour bar with its range and the threshold marked, RGB uint8."""
    bar = colourise(np.linspace(1, 0, height)[:, None].repeat(14, axis=1), colormap)
    panel = np.full((height, width, 3), 255, np.uint8)
    panel[:, 4:18] = bar
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(panel, f"{high:.2g}", (20, 12), font, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(panel, f"{low:.2g}", (20, height - 4), font, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    if threshold is not None and high > low:
        y = int((1 - np.clip((threshold - low) / (high - low), 0, 1)) * (height - 1))
        cv2.line(panel, (0, y), (22, y), (0, 0, 0), 1)
        cv2.putText(panel, "thr", (24, max(10, y + 4)), font, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    return panel


_FONT, _SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45
_LINE = 16  # px per title line


def _wrap(title: str, width: int) -> list[str]:
    """The title broken at spaces into lines that fit ``width`` px: a narrow portrait frame's
    panel is under 130 px wide, and its verdict line ran off the edge."""
    lines: list[str] = []
    for word in title.split(" "):
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, _FONT, _SCALE, 1)[0][0] + 8 <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines or [""]


def _titled(panel: np.ndarray, lines: list[str], n_lines: int) -> np.ndarray:
    bar = np.full((6 + _LINE * n_lines, panel.shape[1], 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(bar, line, (4, 16 + _LINE * i), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, panel])


def panels(
    image: np.ndarray,
    named_maps: list[tuple[str, np.ndarray, float, float, float | None]],
    *,
    header: str = "",
    opacity: float = 0.45,
    display: int = 320,
    colormaps: Sequence[int] | None = None,
) -> np.ndarray:
    """``frame | map | map ...`` side by side with titles and a colour bar per map.

    Each map entry is (title, map, low, high, contour level or None); ``colormaps`` gives each
    map its palette (default: the shared one), so Grad-CAM can look unlike the anomaly map.
    """
    scale = display / max(image.shape[:2])
    size = (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale)))
    base = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    bodies, titles = [base], [header or "frame"]
    for i, (title, amap, low, high, level) in enumerate(named_maps):
        cmap = colormaps[i] if colormaps is not None else COLORMAP
        m = cv2.resize(amap.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        ov = overlay(base, m, low, high, opacity=opacity, contour_level=level, colormap=cmap)
        bodies.append(np.hstack([ov, colour_bar(size[1], low, high, level, colormap=cmap)]))
        titles.append(title)
    wrapped = [_wrap(t, b.shape[1]) for t, b in zip(titles, bodies, strict=True)]
    n_lines = max(len(w) for w in wrapped)
    tiles = [_titled(b, w, n_lines) for b, w in zip(bodies, wrapped, strict=True)]
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for t in tiles:
        row += [t, gap]
    return np.hstack(row[:-1])


def method_panels(
    image: np.ndarray,
    shown: Sequence[tuple[str, str, np.ndarray]],
    low: float,
    high: float,
    decision: float,
    **kwargs: Any,
) -> np.ndarray:
    """``panels`` for (method, title, map) entries, each styled by ``map_style``: one rule for the
    CLI's pictures and the auditor's recorded frames."""
    maps: list[tuple[str, np.ndarray, float, float, float | None]] = []
    cmaps: list[int] = []
    for method, title, m in shown:
        cmap, level = map_style(method, decision)
        maps.append((title, m, low, high, level))
        cmaps.append(cmap)
    return panels(image, maps, colormaps=cmaps, **kwargs)
