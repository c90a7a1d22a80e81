"""Does a frame look like the training images? If not, say so instead of giving a verdict.

PatchCore scores every frame, whatever it shows: a greyscale photo of a part trained in colour
scores as a whole-frame defect, a 4000x3000 frame is squashed to the input square without a
word. So training records what its good images were (file channels and bit depth, size and
aspect-ratio range, the spread of simple intensity statistics) and every frame is compared
with that before its verdict is trusted. A frame outside gets the OUT-OF-DOMAIN state ("OOD"
in records: the audit store's verdict column holds eight characters), with a one-line reason,
and goes to a person like REVIEW.

The intensity checks are deliberately loose (the training range widened by its own width on
each side, and never less than a floor): they are there to catch a wrong camera mode, lighting or product, not
to second-guess the anomaly score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inspector.images import SourceFormat, decode_image_with_format
from inspector.manifest import Manifest, ManifestItem, resolve

OUT_OF_DOMAIN = "OOD"  # the verdict code; shown as OUT_OF_DOMAIN_LABEL
OUT_OF_DOMAIN_LABEL = "OUT-OF-DOMAIN"
SIZE_FACTOR = 2.0  # a side may be up to this factor beyond the training range
ASPECT_FACTOR = 1.25
STAT_WIDEN = 1.0  # each statistic may leave its training range by this share of the range's width
STAT_SAMPLE = 400  # images decoded for intensity statistics (all of them are opened for sizes)
# Intensity statistics, each in [0, 1] units, and the least margin each gets beyond its range.
STAT_FLOORS = {
    "median_r": 0.08,
    "median_g": 0.08,
    "median_b": 0.08,
    "contrast": 0.04,
    "spread": 0.04,
    "colourfulness": 0.03,
}
STAT_NAMES = {
    "median_r": "red median",
    "median_g": "green median",
    "median_b": "blue median",
    "contrast": "contrast (grey interquartile range)",
    "spread": "grey 10-90% range",
    "colourfulness": "colourfulness",
}
# Statistics that a large local defect can move on its own, each only together with its partner:
# a big chip that takes a pill below a quarter of the frame collapses the interquartile range
# (demo: 11 of 300 chips at 0.09 against 0.39 to 0.58) while the 10-90% range stays put; a wide
# dark crack stretches the 10-90% range (crack: 6 of 400 test frames) while the interquartile
# range stays put. Lighting or a camera setting moves both.
PAIRED = {"contrast": "spread", "spread": "contrast"}


def display_verdict(verdict: str) -> str:
    """The verdict as an operator reads it."""
    return OUT_OF_DOMAIN_LABEL if verdict == OUT_OF_DOMAIN else verdict


def frame_statistics(image: np.ndarray, max_side: int = 256) -> dict[str, float]:
    """Per-frame intensity figures of an RGB uint8 frame (subsampled to ~``max_side`` for speed).

    All are medians and percentile ranges, so a defect covering less than a quarter of the
    frame barely moves them (a grey-std contrast flagged 45 of 200 crack defects as out of
    domain; the interquartile range flags none). The two grey ranges are judged as a pair
    (``PAIRED``): a defect large enough to move one leaves the other. Colourfulness is Hasler and Suesstrunk's (2003)
    metric on [0, 1] values with those robust stand-ins for std and mean: zero for a grey frame,
    about 0.15 for pillQC's coloured pills.
    """
    step = max(1, max(image.shape[:2]) // max_side)
    a = image[::step, ::step].astype(np.float32).reshape(-1, 3) / 255.0
    r, g, b = a[:, 0], a[:, 1], a[:, 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    q_rg, q_yb = np.percentile(rg, [25, 50, 75]), np.percentile(yb, [25, 50, 75])
    spread = np.hypot(q_rg[2] - q_rg[0], q_yb[2] - q_yb[0]) / 1.349  # IQR of a normal is 1.349 sd
    grey = np.percentile(0.299 * r + 0.587 * g + 0.114 * b, [10, 25, 75, 90])
    return {
        "median_r": float(np.median(r)),
        "median_g": float(np.median(g)),
        "median_b": float(np.median(b)),
        "contrast": float(grey[2] - grey[1]),
        "spread": float(grey[3] - grey[0]),
        "colourfulness": float(spread + 0.3 * np.hypot(q_rg[1], q_yb[1])),
    }


@dataclass(frozen=True)
class DomainProfile:
    """What the good training images were; stored in model.json under ``domain``."""

    n_images: int
    channels: list[int]  # channel counts seen in the files (1 grey, 3 colour)
    bit_depths: list[int]
    width: tuple[int, int]  # min, max
    height: tuple[int, int]
    aspect: tuple[float, float]  # width / height, min, max
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # statistic: (min, max)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DomainProfile:
        return cls(
            int(d["n_images"]),
            [int(c) for c in d["channels"]],
            [int(b) for b in d["bit_depths"]],
            (int(d["width"][0]), int(d["width"][1])),
            (int(d["height"][0]), int(d["height"][1])),
            (float(d["aspect"][0]), float(d["aspect"][1])),
            {k: (float(v[0]), float(v[1])) for k, v in d.get("stats", {}).items()},
        )

    def check(self, image: np.ndarray, fmt: SourceFormat | None = None) -> str | None:
        """None when the frame is like the training images, else a one-line reason.

        ``fmt`` is the frame's format before 8-bit conversion; without it (camera frames,
        arrays) channel count and bit depth are not checked, colourfulness still is.
        """
        if fmt is not None and fmt.channels not in self.channels:
            return (
                f"{_channels(fmt.channels)} frame; the model was trained on "
                f"{' and '.join(_channels(c) for c in self.channels)} images"
            )
        if fmt is not None and fmt.bit_depth not in self.bit_depths:
            return (
                f"{fmt.bit_depth}-bit frame; the model was trained on "
                f"{' and '.join(f'{b}-bit' for b in self.bit_depths)} images"
            )
        h, w = image.shape[:2]
        if not (
            self.width[0] / SIZE_FACTOR <= w <= self.width[1] * SIZE_FACTOR
            and self.height[0] / SIZE_FACTOR <= h <= self.height[1] * SIZE_FACTOR
        ):
            return f"frame is {w}x{h} pixels; training images were {_range(self.width)} x {_range(self.height)}"
        aspect = w / h
        if not self.aspect[0] / ASPECT_FACTOR <= aspect <= self.aspect[1] * ASPECT_FACTOR:
            return f"aspect ratio {aspect:.2f}; training images had {self.aspect[0]:.2f} to {self.aspect[1]:.2f}"
        values = frame_statistics(image)
        outside = {
            key: values[key] for key, r in self.stats.items() if key in values and not _inside(key, r, values[key])
        }
        for key, v in outside.items():
            partner = PAIRED.get(key)
            if partner in self.stats and partner not in outside:
                continue  # one of a pair alone: a local defect, not the frame (see PAIRED)
            lo, hi = self.stats[key]
            what = "greyscale frame: " if key == "colourfulness" and v < lo else ""
            return f"{what}{STAT_NAMES.get(key, key)} {v:.2f}; training images had {lo:.2f} to {hi:.2f}"
        return None


def _inside(key: str, training: tuple[float, float], v: float) -> bool:
    low, high = _limits(key, *training)
    return low <= v <= high


def _limits(key: str, lo: float, hi: float) -> tuple[float, float]:
    """The accepted range of a statistic: its training range widened by its width, or a floor.

    Colourfulness only has to go below a quarter of the least colourful training image: a grey
    photo is at 0.000, while a dark defect on a faintly coloured product lowers it too (a demo
    pill with a large speck fell to 0.010 against 0.022 to 0.030 in training, and half was too
    tight a floor for it).
    """
    margin = max(STAT_WIDEN * (hi - lo), STAT_FLOORS.get(key, 0.05))
    low = max(lo - margin, 0.25 * lo) if key == "colourfulness" else lo - margin
    return low, hi + margin


def _channels(c: int) -> str:
    return "1-channel (greyscale)" if c == 1 else f"{c}-channel (colour)"


def _range(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def profile_frames(frames: Sequence[tuple[np.ndarray, SourceFormat]]) -> DomainProfile:
    """The profile of decoded frames with their formats (tests, and callers that hold frames)."""
    if not frames:
        raise ValueError("a domain profile needs at least one image")
    sizes = [(im.shape[1], im.shape[0]) for im, _ in frames]
    stats = [frame_statistics(im) for im, _ in frames]
    return _profile(sizes, [f for _, f in frames], stats)


def profile_items(items: Sequence[ManifestItem], root: str | Path) -> DomainProfile:
    """The profile of a manifest's training images: every file's header, a sample's pixels.

    Sizes and formats come from all files (headers only, fast); intensity statistics from up
    to ``STAT_SAMPLE`` evenly spaced images, so 10,000 training images cost a few seconds.
    """
    if not items:
        raise ValueError("a domain profile needs at least one image")
    sizes, formats = [], []
    for it in items:
        with Image.open(resolve(root, it.path)) as img:
            sizes.append(img.size)
            grey = img.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F")
            deep = img.mode.startswith("I")
            formats.append(SourceFormat(1 if grey else 3, 16 if deep else 8))
    pick = np.unique(np.linspace(0, len(items) - 1, min(STAT_SAMPLE, len(items))).round().astype(int))
    stats = []
    for i in pick:
        p = resolve(root, items[int(i)].path)
        image, fmt = decode_image_with_format(p.read_bytes(), str(p))
        formats[int(i)] = fmt  # the decoded format is authoritative where we have it
        stats.append(frame_statistics(image))
    return _profile(sizes, formats, stats)


def _profile(sizes: list[tuple[int, int]], formats: list[SourceFormat], stats: list[dict[str, float]]) -> DomainProfile:
    w = [s[0] for s in sizes]
    h = [s[1] for s in sizes]
    aspect = [a / b for a, b in sizes]
    return DomainProfile(
        len(sizes),
        sorted({f.channels for f in formats}),
        sorted({f.bit_depth for f in formats}),
        (min(w), max(w)),
        (min(h), max(h)),
        (round(min(aspect), 4), round(max(aspect), 4)),
        {k: (min(s[k] for s in stats), max(s[k] for s in stats)) for k in stats[0]},
    )


def profile_mismatch(a: DomainProfile, b: DomainProfile) -> str | None:
    """Why two profiles (a model's and a manifest's) look like different products, or None."""
    if set(a.channels) != set(b.channels):
        return f"channels {a.channels} vs {b.channels}"
    if set(a.bit_depths) != set(b.bit_depths):
        return f"bit depth {a.bit_depths} vs {b.bit_depths}"
    for key, (lo, hi) in a.stats.items():
        if key not in b.stats:
            continue
        low, high = _limits(key, lo, hi)
        blo, bhi = b.stats[key]
        if bhi < low or blo > high:
            return f"{STAT_NAMES.get(key, key)} {blo:.2f}-{bhi:.2f} vs {lo:.2f}-{hi:.2f}"
    if a.aspect[1] * ASPECT_FACTOR < b.aspect[0] or b.aspect[1] * ASPECT_FACTOR < a.aspect[0]:
        return f"aspect ratio {b.aspect[0]:.2f}-{b.aspect[1]:.2f} vs {a.aspect[0]:.2f}-{a.aspect[1]:.2f}"
    return None


def manifest_warnings(model_meta: dict[str, Any], manifest: Manifest, root: str | Path) -> list[str]:
    """Warnings when a model meets a manifest of what looks like another product.

    The same manifest (by content hash) never warns. Otherwise the manifest names are compared,
    and the model's domain profile with the profile of the manifest's good test images (all
    its test images if it has no good ones).
    """
    if model_meta.get("manifest_sha256") == manifest.content_hash():
        return []
    out = []
    trained_on = model_meta.get("manifest_name")
    if trained_on and trained_on != manifest.name:
        out.append(f"the model was trained on manifest '{trained_on}'; this manifest is '{manifest.name}'")
    if model_meta.get("domain"):
        test = manifest.split("test")
        good = [it for it in test if not it.is_anomalous] or test
        if good:
            why = profile_mismatch(DomainProfile.from_json(model_meta["domain"]), profile_items(good, root))
            if why:
                out.append(f"this manifest's images do not look like the model's training images: {why}")
    return out
