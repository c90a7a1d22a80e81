"""UI fixtures: an audit store with one user per role, the tiny model registered, frame folders,
and a guard that fails any test leaving a QThread running (napari's idea)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shiboken6  # noqa: E402
from PySide6.QtCore import QThread  # noqa: E402

PASSWORDS = {"root": "root-pass", "eng": "eng-pass", "ana": "ana-pass", "bob": "bob-pass", "aud": "aud-pass"}
ROLES = {"root": "admin", "eng": "engineer", "ana": "operator", "bob": "operator", "aud": "auditor"}


def still_running(threads: list[QThread], grace_ms: int = 2000) -> list[QThread]:
    """Threads that do not end within ``grace_ms`` (a finished signal may still be on its way out)."""
    # A deleted thread object was not running: Qt aborts the process on deleting a running one.
    return [t for t in threads if shiboken6.isValid(t) and t.isRunning() and not t.wait(grace_ms)]


@pytest.fixture(autouse=True)
def no_thread_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[QThread]]:
    """Fails the test if a QThread it started is still running when it ends."""
    started: list[QThread] = []
    original = QThread.start

    def start(self: QThread, *args: object) -> None:
        started.append(self)
        original(self, *args)

    monkeypatch.setattr(QThread, "start", start)
    yield started
    left = still_running(started)
    for t in left:  # stop them anyway, so one failure does not crash the rest of the run
        abort = getattr(t, "abort", None)
        if abort:
            abort()
        t.wait(10000)
    if left:
        pytest.fail(f"test left {len(left)} QThread(s) running: {left}")


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_tiny: Path):
    """A fresh store: one user per role, the tiny model registered and active."""
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")
    from inspector.audit import AuditStore
    from inspector.pipeline import Inspector
    from inspector.station import Station

    s = AuditStore.open(tmp_path / "audit.db")
    s.add_user(None, "root", "Root", "admin", PASSWORDS["root"])
    admin = s.authenticate("root", PASSWORDS["root"])
    for uid in ("eng", "ana", "bob", "aud"):
        s.add_user(admin, uid, uid.title(), ROLES[uid], PASSWORDS[uid])
    eng = s.authenticate("eng", PASSWORDS["eng"])
    mid = Station(s, Inspector.load(trained_tiny, "cpu"), "setup").register_model(eng)
    s.activate_model(eng, mid, "test model")
    s.test_model_id = mid  # type: ignore[attr-defined]
    yield s
    s.close()


@pytest.fixture()
def make_session(store, trained_tiny: Path, tiny_config, synthetic_pills) -> Callable[..., object]:
    from inspector.app_logic import AppSession

    root, _, manifest_path = synthetic_pills

    def make(user_id: str, **kw: object) -> AppSession:
        user = store.authenticate(user_id, PASSWORDS[user_id])
        return AppSession(
            store, user, model_dir=trained_tiny, device="cpu", manifest_path=manifest_path, data_root=root,
            train_config=tiny_config, **kw,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture()
def frames(tmp_path: Path, synthetic_pills) -> Path:
    """Five readable frames and one corrupt file sorted between them."""
    root, manifest, _ = synthetic_pills
    d = tmp_path / "frames"
    d.mkdir()
    picks = manifest.split("test")[:3] + manifest.split("test")[-2:]
    for i, it in enumerate(picks):
        shutil.copy(root / it.path, d / f"{i:02d}_{Path(it.path).name}")
    (d / "02_zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return d
