"""Encodings of what an inspection keeps: the frame as PNG on disk, maps as compressed arrays.

Maps are ``np.save`` (float16, or float32 where float16 would overflow) then zlib: deterministic
bytes that numpy alone can read back, about a quarter of raw float32 size for smooth maps.
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from inspector.audit.errors import ValidationError
from inspector.images import frame_sha256


def encode_map(array: np.ndarray, name: str = "map") -> bytes:
    """Compresses a 2-D (or H x W x C) float map; refuses NaN so a map always means something."""
    a = np.asarray(array, dtype=np.float32)
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValidationError(f"{name}: expected a 2-D or 3-D float array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValidationError(f"{name}: holds NaN or infinite values")
    small = a.astype(np.float16)
    out = small if np.isfinite(small).all() else a
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(out), allow_pickle=False)
    return zlib.compress(buf.getvalue(), 6)


def decode_map(data: bytes) -> np.ndarray:
    """Inverse of ``encode_map``, returned as float32."""
    return np.load(io.BytesIO(zlib.decompress(data)), allow_pickle=False).astype(np.float32)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_frame(frame: np.ndarray) -> np.ndarray:
    """The store keeps RGB uint8 frames only, the canonical form of ``inspector.images``."""
    a = np.asarray(frame)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValidationError(f"frame must be an H x W x 3 uint8 RGB array, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def frame_relpath(digest: str) -> str:
    """Content address: ``ab/abcdef....png`` keeps folders small and names self-checking."""
    return f"{digest[:2]}/{digest}.png"


def store_frame(frame: np.ndarray, frames_dir: Path) -> tuple[str, str]:
    """Writes the frame once per content (atomic rename, fsynced) and returns (sha256, relpath).

    The hash is ``inspector.images.frame_sha256`` of the pixels, so it matches what the
    inspection core reports for the same frame whatever the file encoding.
    """
    a = check_frame(frame)
    digest = frame_sha256(a)
    rel = frame_relpath(digest)
    path = frames_dir / rel
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        buf = io.BytesIO()
        Image.fromarray(a, "RGB").save(buf, format="PNG", compress_level=1)
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return digest, rel


def locate_frame(frames_dir: Path, db_path: Path | None, stored: str, digest: str) -> Path:
    """Where a recorded frame is on this machine: by content address in this machine's frame store
    (shared mount), else as stored (absolute, or relative to the database folder in older stores)."""
    given = Path(stored)
    candidates = [frames_dir / frame_relpath(digest), frames_dir / given]
    if given.is_absolute():
        candidates.insert(0, given)
    elif db_path is not None:
        candidates.append(db_path.parent / given)
    return next((c for c in candidates if c.is_file()), candidates[0])


def load_frame(path: Path) -> np.ndarray:
    """Reads a stored frame back as RGB uint8."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def encode_png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(check_frame(frame), "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))
