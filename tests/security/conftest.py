"""One attackable template store per session (tiny model trained once); a fresh copy per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.lab import Lab


@pytest.fixture(autouse=True)
def fast_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, trained_tiny: Path, synthetic_pills) -> Lab:
    root, manifest, _ = synthetic_pills
    frames = [(Path(it.path).name, (root / it.path).read_bytes()) for it in manifest.split("test")[:3]]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSPECTOR_ARGON2_FAST", "1")
        return Lab.build(tmp_path_factory.mktemp("security") / "template", trained_tiny, frames)


@pytest.fixture
def lab(template: Lab, tmp_path: Path) -> Iterator[Lab]:
    fresh = template.copy(tmp_path / "lab")
    yield fresh
    fresh.close()
