"""The embedded demo for the app: synthetic data, a trained model, users, a line folder."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from inspector.app_logic.engineer import add_defect_classifier
from inspector.app_logic.session import Progress
from inspector.audit import AuditStore
from inspector.manifest import load_manifest
from inspector.settings import data_dir
from inspector.station import Station

DEMO_ROLES = ("admin", "operator", "engineer", "auditor")
DEMO_KIND = "pill"


@dataclass
class DemoSetup:
    db_path: Path
    model_dir: Path
    manifest_path: Path
    data_root: Path
    credentials: dict[str, str]
    line_folder: Path


def make_line_folder(manifest_path: Path, data_root: Path, out: Path) -> Path:
    """The demo's "production line": the test images, good and defective interleaved, as files.

    An image folder is one of the station's sources, so the demo streams real files.
    """
    import shutil

    if out.is_dir() and any(out.iterdir()):
        return out
    out.mkdir(parents=True, exist_ok=True)
    test = load_manifest(manifest_path).split("test")
    good = [it for it in test if not it.is_anomalous]
    bad = [it for it in test if it.is_anomalous]
    order = []
    for i in range(max(len(good), len(bad))):
        order += good[i : i + 1] + ([bad[i]] if i < len(bad) and i % 2 == 0 else [])
    order += [b for i, b in enumerate(bad) if i % 2 == 1]
    for n, it in enumerate(order):
        src = data_root / it.path
        shutil.copy(src, out / f"part_{n:04d}{src.suffix}")
    return out


def demo_folder() -> Path:
    return data_dir() / "demo"


def create_demo_users(store: AuditStore) -> dict[str, str]:
    """Creates admin/operator/engineer/auditor with random passwords; returns id -> password.

    Random rather than fixed passwords, so a demo store copied to a real line is not open to
    anyone who read the README.
    """
    creds = {role: secrets.token_urlsafe(9) for role in DEMO_ROLES}
    store.add_user(None, "admin", "Demo Admin", "admin", creds["admin"])
    admin = store.authenticate("admin", creds["admin"])
    for role in DEMO_ROLES[1:]:
        store.add_user(admin, role, f"Demo {role.title()}", role, creds[role])
    return creds


def _load_credentials(path: Path) -> dict[str, str]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in doc.items()}
    except (OSError, ValueError):
        return {}


def prepare_demo(progress: Progress | None = None, device: str = "auto") -> DemoSetup:
    """First start: synthetic data, a trained model, a demo store with users, the model active.

    Later starts find everything in place and only reopen it. The passwords are kept in a
    file readable by this user only, so they can be printed again at each start.
    """
    from inspector.demo import prepare_demo_model
    from inspector.pipeline import Inspector

    data_root, manifest_path, model_dir = prepare_demo_model(DEMO_KIND, device=device, progress=progress)
    add_defect_classifier(model_dir, manifest_path, data_root, progress)
    folder = demo_folder()
    folder.mkdir(parents=True, exist_ok=True)
    db_path, cred_path = folder / "audit.db", folder / "demo-users.json"
    if progress:
        progress("audit store", 0, 1)
    with AuditStore.open(db_path) as store:
        creds = _load_credentials(cred_path)
        if not store.list_users():
            creds = create_demo_users(store)
            cred_path.write_text(json.dumps(creds, indent=1) + "\n", encoding="utf-8")
            os.chmod(cred_path, 0o600)
        if store.active_model() is None and "engineer" in creds:
            engineer = store.authenticate("engineer", creds["engineer"])
            station = Station(store, Inspector.load(model_dir, "cpu"), "demo-setup")
            mid = station.model_version_id or station.register_model(engineer)
            store.activate_model(engineer, mid, "demo model trained on first start")
    if progress:
        progress("audit store", 1, 1)
    line = make_line_folder(manifest_path, data_root, folder / "line")
    return DemoSetup(db_path, model_dir, manifest_path, data_root, creds, line)
