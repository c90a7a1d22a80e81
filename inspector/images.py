"""Reading frames into one canonical form: 8-bit RGB, H x W x 3, numpy.

Every reader of images goes through here so that a grayscale, RGBA or 16-bit file, a truncated
JPEG or a text file renamed .png gives the same clear error or the same conversion everywhere.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from inspector.errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MIN_SIDE = 32
# Decoding is refused above this many pixels, checked from the file's header before decoding:
# a 30000x30000 PNG (a decompression bomb) would take 2.7 GB as RGB, and each frame-sized
# float map 4 bytes a pixel more. 40 MP covers 7,000 x 5,700 industrial cameras.
MAX_PIXELS = int(os.environ.get("INSPECTOR_MAX_PIXELS", 40_000_000))


def check_size(width: int, height: int, name: str = "frame") -> None:
    """Refuses a frame above ``MAX_PIXELS`` with a one-line reason (before any pixel is decoded)."""
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height / 1e6:.0f} megapixels, above the decoding "
            f"limit of {MAX_PIXELS / 1e6:.0f} megapixels (INSPECTOR_MAX_PIXELS)"
        )


def to_rgb8(array: np.ndarray, name: str = "frame") -> np.ndarray:
    """Converts gray, gray+alpha, RGB, RGBA, 8- or 16-bit, or float arrays to RGB uint8."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{name}: unsupported image shape {tuple(np.shape(array))}; need H x W x 1, 3 or 4")
    check_size(a.shape[1], a.shape[0], name)
    if a.shape[2] in (2, 4):
        a = a[:, :, :-1]  # drop alpha: parts are inspected as lit, not as composited
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.uint16:
        out = (a.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError(f"{name}: image holds NaN or infinite values")
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        out = np.clip(a * scale, 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"{name}: unsupported pixel type {a.dtype}")
    if min(out.shape[:2]) < MIN_SIDE:
        raise ImageError(
            f"{name}: image is {out.shape[1]}x{out.shape[0]} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed"
        )
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class SourceFormat:
    """What a frame was before conversion to 8-bit RGB: the out-of-domain check needs it."""

    channels: int  # 1 grey, 3 colour (alpha not counted)
    bit_depth: int  # 8 or 16 (float files count as 32)


def array_format(array: np.ndarray) -> SourceFormat:
    """The format of an array as handed over (before ``to_rgb8``)."""
    a = np.asarray(array)
    channels = 1 if a.ndim == 2 or a.shape[2] in (1, 2) else 3
    depth = 8 if a.dtype == np.uint8 else 16 if a.dtype == np.uint16 else 32
    return SourceFormat(channels, depth)


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decodes encoded bytes fully (so a truncated file fails here, not later) to RGB uint8."""
    return decode_image_with_format(data, name)[0]


def decode_image_with_format(data: bytes, name: str = "image") -> tuple[np.ndarray, SourceFormat]:
    """``decode_image``, and the file's channel count and bit depth before conversion."""
    if not data:
        raise ImageError(f"{name}: file is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            check_size(*img.size, name)
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img).astype(np.uint16 if mode != "I" else np.int64)
                if arr.dtype != np.uint16:
                    arr = np.clip(arr, 0, 65535).astype(np.uint16)
            elif mode in ("L", "RGB", "RGBA", "LA"):
                arr = np.asarray(img)
            else:
                arr = np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (unrecognised format)") from None
    except Image.DecompressionBombError as exc:  # PIL's own guard, should MAX_PIXELS be set above it
        raise ImageError(f"{name}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({exc})") from None
    grey = mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F")
    fmt = SourceFormat(1 if grey else 3, 8 if arr.dtype == np.uint8 else 16)
    return to_rgb8(arr, name), fmt


def read_image(path: str | Path) -> np.ndarray:
    """Reads an image file to RGB uint8, with an error that names the file."""
    return read_image_with_format(path)[0]


def read_mask(path: str | Path) -> np.ndarray:
    """A ground-truth mask as uint8 0/255 (H, W), whatever its encoding: 0/255 or 0/1 grey, or a
    colour or palette PNG (any channel counts). Read as the image's red channel above 127, a 0/1
    mask was empty and a green one too, and the set's pixel figures were silently wrong."""
    m = read_image(path).max(axis=2)
    top = int(m.max())
    return np.where(m > top / 2, 255, 0).astype(np.uint8) if top else m


def read_image_with_format(path: str | Path) -> tuple[np.ndarray, SourceFormat]:
    """``read_image``, and the file's channel count and bit depth before conversion."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: file not found")
    if not p.is_file():
        raise ImageError(f"{p}: not a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{p}: cannot read ({exc.strerror})") from None
    return decode_image_with_format(data, str(p))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def frame_sha256(image: np.ndarray) -> str:
    """Hash of the decoded pixels with their shape, so the same frame hashes alike from any file."""
    h = hashlib.sha256(f"{image.shape}|{image.dtype}|".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    d = Path(folder)
    if not d.is_dir():
        raise ImageError(f"{d}: not a folder")
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
