"""Where inspector keeps its files: platformdirs' user folders, overridable by environment."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "inspector"


def data_dir() -> Path:
    """User data folder (audit database, frames, models); INSPECTOR_HOME overrides it."""
    override = os.environ.get("INSPECTOR_HOME")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP, appauthor=False))


def cache_dir() -> Path:
    """Regenerable files: the demo's synthetic data and models."""
    override = os.environ.get("INSPECTOR_HOME")
    return Path(override) / "cache" if override else Path(platformdirs.user_cache_dir(APP, appauthor=False))
