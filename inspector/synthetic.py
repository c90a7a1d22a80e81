"""Synthetic inspection data the project makes itself: concrete with cracks, pills with chips and dirt.

Used by the embedded demo and the fast tests, so neither needs downloaded data. Every image is
a pure function of (kind, index, seed), and defects come with pixel masks so localisation can be
measured. Good parts vary (texture, lighting, position) so a model cannot win by memorising one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.images import sha256_file
from inspector.manifest import Manifest, ManifestItem

DATASETS = ("surface", "pill")
DEFECTS = {"surface": ("crack",), "pill": ("chip", "dirt")}


@dataclass(frozen=True)
class SyntheticSample:
    image: np.ndarray  # RGB uint8
    mask: np.ndarray  # uint8, 255 where defective
    defect: str | None


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    small = rng.standard_normal((max(2, size // scale), max(2, size // scale))).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _concrete(rng: np.random.Generator, size: int) -> np.ndarray:
    tone = rng.uniform(150, 195)
    tex = 10 * _smooth_noise(rng, size, 24) + 6 * _smooth_noise(rng, size, 6) + 4 * rng.standard_normal((size, size))
    gray = np.clip(tone + tex, 0, 255)
    tint = np.array([1.0, 0.98, 0.94]) * rng.uniform(0.97, 1.03)
    return np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)


def _crack(rng: np.random.Generator, size: int) -> np.ndarray:
    """A jagged random-walk polyline across part of the surface, as a binary mask."""
    mask = np.zeros((size, size), np.uint8)
    x, y = rng.uniform(0.15, 0.85, 2) * size
    angle = rng.uniform(0, 2 * np.pi)
    pts = [(x, y)]
    for _ in range(int(rng.integers(8, 16))):
        angle += rng.normal(0, 0.5)
        step = rng.uniform(0.03, 0.07) * size
        x = float(np.clip(x + step * np.cos(angle), 2, size - 3))
        y = float(np.clip(y + step * np.sin(angle), 2, size - 3))
        pts.append((x, y))
    width = max(1, int(round(size / rng.uniform(70, 110))))
    cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 255, width, cv2.LINE_AA)
    return (mask > 96).astype(np.uint8) * 255


def _surface(rng: np.random.Generator, size: int, defect: str | None) -> SyntheticSample:
    img = _concrete(rng, size).astype(np.float32)
    mask = np.zeros((size, size), np.uint8)
    if defect == "crack":
        mask = _crack(rng, size)
        soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (3, 3), 0.8)
        img *= (1 - 0.65 * soft)[..., None]
    return SyntheticSample(np.clip(img, 0, 255).astype(np.uint8), mask, defect)


def _pill(rng: np.random.Generator, size: int, defect: str | None) -> SyntheticSample:
    bg = np.full((size, size, 3), rng.uniform(30, 45), np.float32)
    bg += 3 * _smooth_noise(rng, size, 16)[..., None]
    cx, cy = size / 2 + rng.normal(0, size * 0.02, 2)
    a, b = size * rng.uniform(0.36, 0.40), size * rng.uniform(0.22, 0.25)
    theta = rng.uniform(-8, 8)
    body = np.zeros((size, size), np.uint8)
    cv2.ellipse(body, (int(cx), int(cy)), (int(a), int(b)), theta, 0, 360, 255, -1, cv2.LINE_AA)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shade = 1.0 - 0.25 * (((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2)
    colour = np.array([236, 232, 222], np.float32) * rng.uniform(0.95, 1.0)
    pill = colour * np.clip(shade, 0.6, 1.0)[..., None] + 2.5 * rng.standard_normal((size, size, 1))
    # A printed score line across the pill, as on real tablets.
    cv2.line(pill, (int(cx), int(cy - b * 0.8)), (int(cx), int(cy + b * 0.8)), (200, 196, 188), 1, cv2.LINE_AA)
    mask = np.zeros((size, size), np.uint8)
    if defect == "chip":
        ang = rng.uniform(0, 2 * np.pi)
        ex, ey = cx + a * 0.95 * np.cos(ang), cy + b * 0.95 * np.sin(ang)
        r = size * rng.uniform(0.06, 0.09)
        bite = np.zeros_like(body)
        cv2.circle(bite, (int(ex), int(ey)), int(r), 255, -1, cv2.LINE_AA)
        mask = ((bite > 0) & (body > 0)).astype(np.uint8) * 255
        body = np.where(bite > 0, 0, body).astype(np.uint8)
    alpha = cv2.GaussianBlur(body.astype(np.float32) / 255, (3, 3), 0.7)[..., None]
    img = bg * (1 - alpha) + pill * alpha
    if defect == "dirt":
        spots = np.zeros((size, size), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            r_ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6)
            px, py = cx + a * rad * np.cos(r_ang), cy + b * rad * np.sin(r_ang)
            axes = (int(size * rng.uniform(0.015, 0.035)), int(size * rng.uniform(0.012, 0.03)))
            cv2.ellipse(spots, (int(px), int(py)), axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
        spots = np.where(body > 0, spots, 0)
        mask = (spots > 96).astype(np.uint8) * 255
        dirt = np.array([95, 75, 50], np.float32)
        s = cv2.GaussianBlur(spots.astype(np.float32) / 255, (3, 3), 0.8)[..., None] * 0.85
        img = img * (1 - s) + dirt * s
    return SyntheticSample(np.clip(img, 0, 255).astype(np.uint8), mask, defect)


def make_sample(kind: str, index: int, defect: str | None, seed: int = 0, size: int = 128) -> SyntheticSample:
    """One deterministic sample; ``defect`` None gives a good part."""
    if kind not in DATASETS:
        raise ValueError(f"unknown synthetic dataset '{kind}'; choose one of {DATASETS}")
    if defect is not None and defect not in DEFECTS[kind]:
        raise ValueError(f"'{kind}' has no defect '{defect}'; choose one of {DEFECTS[kind]}")
    tag = 0 if defect is None else 1 + DEFECTS[kind].index(defect)
    rng = np.random.default_rng([seed, DATASETS.index(kind), tag, index])
    return (_surface if kind == "surface" else _pill)(rng, size, defect)


def write_dataset(
    root: str | Path,
    kind: str,
    *,
    n_train: int = 40,
    n_test_good: int = 12,
    n_test_defect: int = 12,
    seed: int = 0,
    size: int = 128,
) -> Manifest:
    """Writes images under ``root/kind/<class>`` and masks under ``root/kind-masks``, so the
    image folder also works with ``--layout folders``; returns a manifest relative to ``root``."""
    root = Path(root)
    base = root / kind
    items: list[ManifestItem] = []
    plan: list[tuple[str, str | None, int, str]] = [("good", None, i, "train") for i in range(n_train)]
    plan += [("good", None, n_train + i, "test") for i in range(n_test_good)]
    plan += [(d, d, i, "test") for d in DEFECTS[kind] for i in range(n_test_defect)]
    for folder, defect, idx, split in plan:
        sample = make_sample(kind, idx, defect, seed, size)
        img_path = base / folder / f"{folder}_{idx:04d}.png"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img_path), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
        mask_rel = None
        if defect is not None:
            mask_path = root / f"{kind}-masks" / folder / f"{folder}_{idx:04d}_mask.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask_path), sample.mask)
            mask_rel = mask_path.relative_to(root).as_posix()
        items.append(
            ManifestItem(
                img_path.relative_to(root).as_posix(),
                "anomalous" if defect else "normal",
                split,
                sha256_file(img_path),
                defect,
                mask_rel,
            )
        )
    return Manifest(f"synthetic-{kind}", items, f"synthetic {kind} data, seed {seed}, {size}px")
