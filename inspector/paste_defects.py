"""Synthetic defects pasted onto a product's own good images, with masks, to measure localisation.

pillQC and crack come without pixel masks, so a map's localisation cannot be scored on their
real defects. Pasting a defect of known shape onto a good image of the same product gives a
mask while keeping the product, lighting and camera real. Two kinds, drawn in the spirit of
``inspector.synthetic``: a dark spot (dirt, a speck) and a thin dark scratch (a crack, a
scuff). They land on the product: where the image is brighter than its own median when the
product is a bright part on a dark ground (pills), anywhere but a thin margin otherwise
(surfaces). Uniformly there: a centred blob must not win by where defects are put.
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("spot", "scratch")


def _product_area(image: np.ndarray) -> np.ndarray:
    """Where a defect may land: the bright part of a part-on-background image, else the whole frame
    but a margin of a tenth of its side (so the defect is whole), never biased towards the centre."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = gray.shape
    m = max(2, min(h, w) // 10)
    frame = np.zeros((h, w), bool)
    frame[m : h - m, m : w - m] = True
    bright = gray > np.median(gray) + 0.5 * gray.std()
    # A part on a background: the bright area is a sizeable, not all-covering share of the frame.
    if 0.1 < bright.mean() < 0.7:
        inner = cv2.erode(bright.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        if (inner & frame).sum() > 50:
            return inner & frame
    return frame


def paste_defect(image: np.ndarray, rng: np.random.Generator, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A copy of the RGB uint8 ``image`` with one dark defect, and its boolean mask."""
    kind = kind or str(rng.choice(KINDS))
    if kind not in KINDS:
        raise ValueError(f"unknown pasted defect '{kind}'; choose one of {KINDS}")
    h, w = image.shape[:2]
    side = min(h, w)
    ys, xs = np.nonzero(_product_area(image))
    k = int(rng.integers(len(ys)))
    cy, cx = int(ys[k]), int(xs[k])
    mask = np.zeros((h, w), np.uint8)
    if kind == "spot":
        axes = (max(2, int(side * rng.uniform(0.03, 0.05))), max(2, int(side * rng.uniform(0.025, 0.045))))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        pts = [(float(cx), float(cy))]
        for _ in range(int(rng.integers(4, 8))):
            angle += rng.normal(0, 0.4)
            step = rng.uniform(0.03, 0.05) * side
            x = float(np.clip(pts[-1][0] + step * np.cos(angle), 1, w - 2))
            y = float(np.clip(pts[-1][1] + step * np.sin(angle), 1, h - 2))
            pts.append((x, y))
        width = max(2, int(round(side / 60)))
        cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 255, width, cv2.LINE_AA)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (3, 3), 0.8)[..., None]
    dark = np.array([70, 55, 40], np.float32) * rng.uniform(0.7, 1.1)
    out = image.astype(np.float32) * (1 - 0.85 * soft) + dark * 0.85 * soft
    return np.clip(out, 0, 255).astype(np.uint8), mask > 96
