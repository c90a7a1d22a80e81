"""Starts the app on the demo, logs in as each role, and saves one PNG per view; prints fps.

Run through ``scripts/screenshots.sh`` (Xvfb + the xcb platform, a real X window). It drives the
real widgets the way a user would (start the line, decide, evaluate, verify), waiting on their
signals, so the pictures show the app as it works, not a mock-up.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

from inspector import app_logic  # noqa: E402
from inspector.audit import AuditStore  # noqa: E402
from ui.app import DemoSetupDialog, InspectorWindow, create_app  # noqa: E402
from ui.login_dialog import LoginDialog  # noqa: E402

AGREE = {"OK": "accept", "REVIEW": "accept", "DEFECT": "reject", "OOD": "reject"}


def pump(ms: int = 300) -> None:
    """Lets Qt lay out and paint for ``ms`` (a screenshot of an unpainted widget is blank)."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(signal: Any, timeout_s: float) -> list[Any]:
    loop, got = QEventLoop(), []

    def hit(*args: Any) -> None:
        got.append(args)
        loop.quit()

    signal.connect(hit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(hit)
    if not got:
        raise TimeoutError(f"no signal within {timeout_s} s")
    return list(got[0])


def wait_until(pred: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        pump(50)


def save(widget: QWidget | None, out: Path, name: str) -> Path:
    """The widget, or the whole virtual screen (dialogs included) when ``widget`` is None."""
    pump(400)
    path = out / name
    if widget is None:
        pix = QGuiApplication.primaryScreen().grabWindow(0)
    else:
        pix = widget.grab()
    pix.save(str(path))
    print(f"saved {path} ({pix.width()}x{pix.height()})")
    return path


def window_for(store: AuditStore, setup: app_logic.DemoSetup, role: str) -> InspectorWindow:
    user = store.authenticate(role, setup.credentials[role])
    session = app_logic.AppSession(
        store, user, model_dir=setup.model_dir, manifest_path=setup.manifest_path, data_root=setup.data_root,
        default_source=str(setup.line_folder),
    )
    window = InspectorWindow(session)
    window.resize(1280, 800)  # the smallest screen the station is laid out for
    window.move(0, 0)
    window.show()
    return window


def operator_shots(store: AuditStore, setup: app_logic.DemoSetup, out: Path) -> None:
    window = window_for(store, setup, "operator")
    op = window.view("operator")
    op.start_stream(str(setup.line_folder))
    wait_until(lambda: len(op.items) >= 4, 300)
    for _ in range(12):  # work like an operator until a defective part is on screen
        item = op.current()
        if item is None or (item.result.verdict == "DEFECT" and item.decision is None):
            break
        op.decide(AGREE[item.result.verdict])  # recorded on a worker: wait for it
        wait_until(lambda: op.deciding is None and op.current() is not None and op.current().decision is None, 60)
    save(window, out, "operator.png")
    op.show_gradcam.setChecked(True)  # Grad-CAM in its own palette, the legend follows
    save(window, out, "operator-gradcam.png")
    op.show_map.setChecked(True)
    op.decide("accept")  # accepting a DEFECT overrules the model: the reason picker opens
    if op.reason_dialog is not None:
        op.reason_dialog.move(480, 260)
        op.reason_dialog.choose("lighting-or-glare", "reflection; checked the part by hand")
        save(None, out, "operator-reason.png")
        op.reason_dialog.accept()  # recorded as an overruling decision with its reason
    for _ in range(6):  # the rest of a short shift, agreeing with the model
        wait_until(lambda: op.deciding is None and op.current() is not None and op.current().decision is None, 60)
        op.decide(AGREE[op.current().result.verdict])
    wait_until(lambda: op.deciding is None, 60)
    fps_shown(op, setup)
    window.close()


def fps_shown(op: Any, setup: app_logic.DemoSetup) -> None:
    """Frames per second drawn with overlays: live stream end to end, and drawing alone."""
    op.stop_stream()
    shown: list[float] = []
    op.frame_shown.connect(lambda _i: shown.append(time.perf_counter()))
    op.start_stream(str(setup.line_folder), live=True)
    wait_for(op.stream_ended, 600)
    if len(shown) > 1:
        fps = (len(shown) - 1) / (shown[-1] - shown[0])
        print(f"fps shown, live stream with inference + overlays + audit record: {fps:.1f} ({len(shown)} frames)")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 3.0:
        op.show_item(n % len(op.items))
        op.frame.repaint()
        n += 1
    print(f"fps drawn, overlays only (compose + paint, no inference): {n / (time.perf_counter() - t0):.1f}")


def engineer_shot(store: AuditStore, setup: app_logic.DemoSetup, out: Path) -> None:
    window = window_for(store, setup, "engineer")
    eng = window.view("engineer")
    eng.evaluate_selected()
    wait_for(eng.evaluation_done, 600)
    pump(500)
    save(window, out, "engineer.png")
    eng.models_table.selectRow(0)
    eng.show_settings()  # the version's settings and how they were chosen
    eng.settings_dialog.move(140, 220)
    pump(300)
    save(None, out, "engineer-settings.png")
    eng.settings_dialog.close()
    window.close()


def auditor_shot(store: AuditStore, setup: app_logic.DemoSetup, out: Path) -> None:
    window = window_for(store, setup, "auditor")
    audit = window.view("auditor")
    audit.refresh()
    newest_first = list(reversed(audit.rows))
    overruled = [i for i, d in enumerate(newest_first) if d.disagrees]
    audit.table.selectRow(overruled[0] if overruled else 0)
    audit.verify()  # runs on a worker; the result arrives by signal
    wait_for(audit.verified, 120)
    save(window, out, "auditor.png")
    window.close()


def users_shot(store: AuditStore, setup: app_logic.DemoSetup, out: Path) -> None:
    window = window_for(store, setup, "admin")
    window.tabs.setCurrentWidget(window.view("users"))
    window.view("users").table.selectRow(1)
    save(window, out, "users.png")
    window.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    create_app()
    demo = DemoSetupDialog()
    demo.show()
    demo.worker.start()
    wait_for(demo.worker.finished, 1800)
    pump(100)
    if demo.result_setup is None:
        print(f"demo set-up failed: {demo.error}", file=sys.stderr)
        return 1
    setup = demo.result_setup
    demo.close()
    print("demo users:", ", ".join(setup.credentials))
    # A fresh line each run, so the pictures do not depend on earlier runs' decisions.
    shutil.rmtree(setup.line_folder, ignore_errors=True)
    app_logic.make_line_folder(setup.manifest_path, setup.data_root, setup.line_folder)
    with AuditStore.open(setup.db_path) as store:
        login = LoginDialog(store, hint="Demo: users operator, engineer, auditor and admin; passwords in the terminal.")
        login.resize(420, 300)
        login.user_id.setText("operator")
        login.password.setText("x" * 12)
        login.show()
        save(login, args.out, "login.png")
        login.close()
        operator_shots(store, setup, args.out)
        engineer_shot(store, setup, args.out)
        auditor_shot(store, setup, args.out)
        users_shot(store, setup, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
