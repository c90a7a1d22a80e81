"""A model directory as the audit chain knows it: every file by relative path and sha256.

Registration records this map (``model.json`` included, so its threshold and input size are
covered, and the memory bank); a station compares the directory it is about to use with it and
refuses a mismatch, naming the file. Plain hashing, no torch: verify and the CLI use it too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from inspector.errors import InspectorError

CHUNK = 1 << 20


class ModelMismatch(InspectorError):
    """A model directory differs from its registration in the audit store."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def hash_model_dir(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Every regular file under ``directory`` (hidden ones included): relative POSIX path -> sha256."""
    root = Path(directory)
    if not root.is_dir():
        raise ModelMismatch(f"model directory {root} does not exist")
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[path.relative_to(root).as_posix()] = _sha256(path)
    return out


def differences(directory: str | os.PathLike[str], registered: Mapping[str, str]) -> list[str]:
    """What differs between a directory and its registered file map, one phrase per file."""
    root = Path(directory)
    try:
        now = hash_model_dir(root)
    except (ModelMismatch, OSError) as exc:
        return [str(exc)]
    out = []
    for rel in sorted(set(registered) | set(now)):
        if rel not in now:
            out.append(f"{root / rel} is missing")
        elif rel not in registered:
            out.append(f"{root / rel} was added after registration")
        elif now[rel] != registered[rel]:
            was, got = registered[rel][:12], now[rel][:12]
            out.append(f"{root / rel} differs from its registration (sha256 {got}, registered {was})")
    return out
