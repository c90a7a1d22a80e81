"""Synthetic defects pasted onto a product's own good images, each with its pixel mask.

The settings search (``inspector.autoconfig``) has no defective images of a new product, so it
makes some: self-supervised anomaly detection does the same (CutPaste, Li et al. 2021; NSA,
Schlüter et al. 2022; DRAEM, Zavrtanik et al. 2021). Four kinds cover what lines reject:
- ``cutpaste``: a patch of another good image, rotated, at a new place (misplaced structure);
- ``scar``: a thin jagged line, darker or brighter than the surface (cracks, scratches);
- ``speck``: a few small dark blobs (dirt, pits);
- ``blend``: a smooth-noise region whose texture comes from elsewhere, blended softly (DRAEM).

Every kind is a pure function of the rng, so a search is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

KINDS = ("cutpaste", "scar", "speck", "blend")
# Each defect is blended into the image at a strength drawn from this range: defects far above
# the detection limit are found by every configuration and do not tell them apart.
STRENGTH = (1.0, 1.0)


def foreground(image: np.ndarray) -> np.ndarray | None:
    """Where the part is, when it stands out from a plain background (a pill on a tray); None for
    a surface filling the frame (concrete, a commutator), where a defect may be anywhere.

    The background is the median colour of the frame's border; the part is what differs from it.
    """
    h, w = image.shape[:2]
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    dist = np.linalg.norm(image.astype(np.float32) - np.median(border, axis=0), axis=-1)
    fg = (dist > 40).astype(np.uint8)
    fg = cv2.erode(fg, np.ones((3, 3), np.uint8), iterations=max(1, min(h, w) // 60))
    share = fg.mean()
    return fg.astype(bool) if 0.05 < share < 0.8 else None


def _centre(
    rng: np.random.Generator, h: int, w: int, fg: np.ndarray | None, margin: float = 0.12
) -> tuple[float, float]:
    if fg is not None:
        ys, xs = np.nonzero(fg)
        i = int(rng.integers(len(ys)))
        return float(xs[i]), float(ys[i])
    return float(rng.uniform(margin, 1 - margin) * w), float(rng.uniform(margin, 1 - margin) * h)


def _cutpaste(
    image: np.ndarray, donor: np.ndarray, rng: np.random.Generator, fg: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    side = min(h, w)
    ph = max(3, int(side * rng.uniform(0.06, 0.14)))
    pw = max(3, int(ph * rng.uniform(0.5, 2.0)))
    pw = min(pw, w - 2)
    dh, dw = donor.shape[:2]
    sy, sx = int(rng.integers(0, max(1, dh - ph))), int(rng.integers(0, max(1, dw - pw)))
    patch = donor[sy : sy + ph, sx : sx + pw]
    if rng.random() < 0.5:
        patch = np.ascontiguousarray(np.rot90(patch, int(rng.integers(1, 4))))
    patch = np.clip(patch.astype(np.float32) * rng.uniform(0.75, 1.25), 0, 255)
    ph, pw = patch.shape[:2]
    ph, pw = min(ph, h - 2), min(pw, w - 2)
    cx, cy = _centre(rng, h, w, fg)
    y = int(np.clip(cy - ph / 2, 0, h - ph - 1))
    x = int(np.clip(cx - pw / 2, 0, w - pw - 1))
    out = image.astype(np.float32)
    out[y : y + ph, x : x + pw] = patch[:ph, :pw]
    mask = np.zeros((h, w), np.uint8)
    mask[y : y + ph, x : x + pw] = 255
    return out, mask


def _scar(image: np.ndarray, rng: np.random.Generator, fg: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    side = min(h, w)
    x, y = _centre(rng, h, w, fg)
    angle = rng.uniform(0, 2 * np.pi)
    pts = [(x, y)]
    for _ in range(int(rng.integers(4, 10))):
        angle += rng.normal(0, 0.45)
        step = rng.uniform(0.03, 0.07) * side
        x = float(np.clip(x + step * np.cos(angle), 1, w - 2))
        y = float(np.clip(y + step * np.sin(angle), 1, h - 2))
        pts.append((x, y))
    width = max(1, int(round(side * rng.uniform(0.008, 0.02))))
    mask = np.zeros((h, w), np.uint8)
    cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 255, width, cv2.LINE_AA)
    gain = rng.uniform(0.25, 0.6) if rng.random() < 0.7 else rng.uniform(1.5, 2.2)
    return _shade(image, mask, gain), (mask > 96).astype(np.uint8) * 255


def _speck(image: np.ndarray, rng: np.random.Generator, fg: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    side = min(h, w)
    mask = np.zeros((h, w), np.uint8)
    cx, cy = _centre(rng, h, w, fg)
    for _ in range(int(rng.integers(1, 4))):
        px = int(np.clip(cx + rng.normal(0, 0.06 * side), 1, w - 2))
        py = int(np.clip(cy + rng.normal(0, 0.06 * side), 1, h - 2))
        axes = (max(1, int(side * rng.uniform(0.012, 0.035))), max(1, int(side * rng.uniform(0.01, 0.03))))
        cv2.ellipse(mask, (px, py), axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
    out = image.astype(np.float32)
    colour = out[mask > 0].mean(axis=0) * rng.uniform(0.2, 0.55)
    if image.ndim == 3 and np.ptp(image.reshape(-1, 3).mean(axis=0)) > 8:  # a colour product: brownish dirt
        colour = colour * np.array([1.15, 0.95, 0.7], np.float32)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (3, 3), 0.7)[..., None] * rng.uniform(0.7, 0.95)
    out = out * (1 - alpha) + colour * alpha
    return out, (mask > 96).astype(np.uint8) * 255


def _blend(
    image: np.ndarray, donor: np.ndarray, rng: np.random.Generator, fg: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    side = min(h, w)
    r = side * rng.uniform(0.05, 0.11)
    cx, cy = _centre(rng, h, w, fg)
    noise = cv2.resize(rng.standard_normal((8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    blob = 1.0 - np.sqrt(((xx - cx) / (r * rng.uniform(0.6, 1.6))) ** 2 + ((yy - cy) / r) ** 2) + 0.35 * noise
    mask = (blob > 0).astype(np.uint8) * 255
    texture = cv2.resize(donor, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    texture = np.roll(texture, (int(rng.integers(h)), int(rng.integers(w))), axis=(0, 1))
    texture = np.clip(texture * rng.uniform(0.6, 1.4), 0, 255)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (5, 5), 1.5)[..., None] * rng.uniform(0.7, 1.0)
    out = image.astype(np.float32) * (1 - alpha) + texture * alpha
    return out, mask


def _shade(image: np.ndarray, mask: np.ndarray, gain: float) -> np.ndarray:
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (3, 3), 0.8)[..., None]
    return image.astype(np.float32) * (1 + (gain - 1) * soft)


def paste_defect(
    image: np.ndarray, donor: np.ndarray, rng: np.random.Generator, kind: str | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """One defective copy of an RGB uint8 ``image``: (image, mask 255 on the defect, kind).

    ``donor`` is another good image of the same product (for cut-paste and blended texture).
    """
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    fg = foreground(image)
    if kind == "cutpaste":
        out, mask = _cutpaste(image, donor, rng, fg)
    elif kind == "scar":
        out, mask = _scar(image, rng, fg)
    elif kind == "speck":
        out, mask = _speck(image, rng, fg)
    elif kind == "blend":
        out, mask = _blend(image, donor, rng, fg)
    else:
        raise ValueError(f"unknown synthetic defect '{kind}'; choose one of {KINDS}")
    if not mask.any():  # a speck or scar drawn too thin to survive the mask threshold
        return paste_defect(image, donor, rng, "cutpaste")
    k = rng.uniform(*STRENGTH)
    out = image.astype(np.float32) * (1 - k) + out * k
    return np.clip(out, 0, 255).astype(np.uint8), mask, kind


def defective_set(
    images: Sequence[np.ndarray], donors: Sequence[np.ndarray], per_image: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """``per_image`` defective copies of every image, cycling through the kinds."""
    rng = np.random.default_rng(seed)
    out, masks, kinds = [], [], []
    for i, im in enumerate(images):
        for j in range(per_image):
            kind = KINDS[(i * per_image + j) % len(KINDS)]
            donor = donors[int(rng.integers(len(donors)))]
            d, m, k = paste_defect(im, donor, rng, kind)
            out.append(d)
            masks.append(m)
            kinds.append(k)
    return out, masks, kinds
