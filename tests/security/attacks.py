"""The attacks of issue 12, each as a function over a fresh ``Lab``: (caught?, what was said).

Shared by ``tests/security`` (every attack must be caught) and ``scripts/attack_audit.py``
(prints the table for docs/measured.md). "Caught" means refused by the store, or reported by verify
naming the record and the actor; each function checks the specific refusal or report, so an
unrelated error does not count as a catch.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from inspector.audit import AuditError, ChainBroken, PermissionDenied, User, ValidationError
from inspector.audit.schema import DecisionRow, EventRow, InspectionRow
from tests.security.lab import PASSWORDS, Lab

Outcome = tuple[bool, str]


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[Lab], Outcome]


def shell(db: Path, *sql: str) -> None:
    """The sqlite3 shell, triggers left in place (plain UPDATE of the mutable users table)."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        for stmt in sql:
            con.execute(stmt)
    finally:
        con.close()


def cli(*args: str, password: str = "") -> tuple[int, str]:
    from click.testing import CliRunner

    from inspector.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args], env={"INSPECTOR_PASSWORD": password})
    return r.exit_code, r.output.strip()


def refused(fn: Callable[[], object], *errors: type[BaseException]) -> Outcome:
    try:
        fn()
    except errors as exc:
        return True, f"refused: {exc}"
    return False, "accepted"


def verify_names(lab: Lab, *words: str) -> Outcome:
    """Caught when verify fails and one problem names every word (record, actor...)."""
    res = lab.st.verify()
    for p in res.problems:
        if all(w in str(p) for w in words):
            return True, f"verify: {p}"
    return False, f"verify: {res.summary()}"


# ---------------------------------------------------------------- users
def role_update_then_back(lab: Lab) -> Outcome:
    op1 = lab.sessions["op1"]
    shell(lab.db, "UPDATE users SET role = 'engineer' WHERE id = 'op1'")
    out = refused(lambda: lab.st.set_threshold(op1, lab.model_id, 0.01, "looks fine"), PermissionDenied)
    meanwhile = verify_names(lab, "op1", "role changed outside the store")
    shell(lab.db, "UPDATE users SET role = 'operator' WHERE id = 'op1'")
    return out[0] and meanwhile[0], f"{out[1]}; while edited, {meanwhile[1]}"


def role_check_bypassed(lab: Lab) -> Outcome:
    """A patched store lets an operator log a threshold change: verify replays the roles."""
    lab.forge(
        EventRow(
            kind="threshold_changed",
            actor="op1",
            details_json=json.dumps(
                {
                    "model_id": lab.model_id,
                    "old": 1.0,
                    "new": 0.01,
                    "reason": "x",
                    "session": lab.sessions["op1"].session_id,
                }
            ),
            created_at=datetime.now(UTC),
        )
    )
    return verify_names(lab, "op1", "operator", "record #")


def password_hash_swap(lab: Lab) -> Outcome:
    from argon2 import PasswordHasher

    con = sqlite3.connect(lab.db)
    (saved,) = con.execute("SELECT password_hash FROM users WHERE id = 'op2'").fetchone()
    con.close()
    shell(lab.db, f"UPDATE users SET password_hash = '{PasswordHasher().hash('attacker-pass')}' WHERE id = 'op2'")
    out = refused(lambda: lab.st.authenticate("op2", "attacker-pass"), AuditError)
    meanwhile = verify_names(lab, "op2", "password_digest changed outside the store")
    shell(lab.db, f"UPDATE users SET password_hash = '{saved}' WHERE id = 'op2'")
    con = sqlite3.connect(lab.db)
    (why,) = con.execute("SELECT details_json FROM events WHERE kind = 'login_failed' ORDER BY id DESC").fetchone()
    con.close()
    logged = "altered outside the store" in why
    return out[0] and meanwhile[0] and logged, f"{out[1]} (logged: {why}); while swapped, {meanwhile[1]}"


def hand_built_user(lab: Lab) -> Outcome:
    iid = lab.inspect(1)
    first = refused(lambda: User("op1", "OP1", "operator", True, datetime.now(UTC)), PermissionDenied)
    from inspector.audit.records import UserInfo, mint_session

    forged = mint_session(UserInfo("op1", "OP1", "operator", True, datetime.now(UTC)), "f" * 32)
    second = refused(lambda: lab.st.record_decision(forged, iid, "accept"), PermissionDenied)
    third = refused(lambda: lab.st.set_threshold(forged, lab.model_id, 5.0, "x"), PermissionDenied)
    return first[0] and second[0] and third[0], f"{first[1]}; minted: {second[1]}"


def session_bypassed(lab: Lab) -> Outcome:
    """A decision appended with a session no login opened: verify names record and actor."""
    iid = lab.inspect(2)
    lab.forge(
        DecisionRow(uid="f" * 32, inspection_id=iid, user_id="op1", decision="accept", meaning="reviewed: accepted",
                    created_at=datetime.now(UTC), user_name="OP1 User", user_role="operator", session_id="e" * 32)
    )  # fmt: skip
    return verify_names(lab, "op1", "login session", "decisions")


def lockout(lab: Lab) -> Outcome:
    for _ in range(30):
        try:
            lab.st.authenticate("op1", "wrong-password")
        except AuditError:
            pass
    out = refused(lambda: lab.st.authenticate("op1", PASSWORDS["op1"]), AuditError)
    locked = any(u.locked for u in lab.st.list_users() if u.id == "op1")
    lab.st.unlock_user(lab.sessions["root"], "op1", "identity checked by phone")
    back = lab.st.authenticate("op1", PASSWORDS["op1"]).id == "op1"
    return out[0] and locked and back, f"{out[1]}; locked={locked}; unlocked by root (logged), login ok={back}"


def fast_hash_outside_tests(lab: Lab) -> Outcome:
    code = "from inspector.audit.passwords import hash_password; print(hash_password('some-password'))"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["INSPECTOR_ARGON2_FAST"] = "1"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    full = "m=65536,t=3,p=4" in r.stdout
    return full, f"stored {r.stdout.strip()[:40]}...; log: {r.stderr.strip().splitlines()[-1] if r.stderr else ''}"


def password_as_user_id(lab: Lab) -> Outcome:
    typed = "op1pass123"
    refused(lambda: lab.st.authenticate(typed, "whatever-1"), AuditError)
    lab.close()
    raw = b"".join(p.read_bytes() for p in lab.db.parent.iterdir() if p.is_file())
    lab.open()
    return typed.encode() not in raw, "the typed id is nowhere in the database files (logged as a salted hash)"


def renamed_after_signing(lab: Lab) -> Outcome:
    iid = lab.inspect(3)
    did = lab.st.record_decision(lab.sessions["op1"], iid, "accept")
    lab.st.set_user(lab.sessions["root"], "op1", name="Someone Else", role="engineer")
    d = next(v for v in lab.st.decisions() if v.id == did)
    ok = (d.user_name, d.user_role) == ("OP1 User", "operator")
    return ok, f"decision {did} still shows {d.user_name!r} ({d.user_role}) as at signing"


# ---------------------------------------------------------------- models and thresholds
def _inspect_cli(lab: Lab, model: Path) -> tuple[int, str]:
    return cli("inspect", "--model", model, "--input", lab.frames, "--db", lab.db, "--station", "line-1")


def _edited_copy(lab: Lab, edit: Callable[[dict[str, object]], None]) -> Path:
    import shutil

    copy = lab.root / "model-copy"
    shutil.copytree(lab.model_dir, copy)
    doc = json.loads((copy / "model.json").read_text())
    edit(doc)
    (copy / "model.json").write_text(json.dumps(doc, indent=2))
    return copy


def threshold_in_copy(lab: Lab) -> Outcome:
    copy = _edited_copy(lab, lambda d: d["metadata"]["thresholds"].update(decision=1e6))  # type: ignore[index]
    code, out = _inspect_cli(lab, copy)
    return code != 0 and "model.json" in out, out.splitlines()[-1] if out else f"exit {code}"


def input_size_edited(lab: Lab) -> Outcome:
    copy = _edited_copy(lab, lambda d: d["config"].update(input_size=112))  # type: ignore[union-attr]
    code, out = _inspect_cli(lab, copy)
    return code != 0 and "model.json" in out, out.splitlines()[-1] if out else f"exit {code}"


def folder_overwritten(lab: Lab) -> Outcome:
    """Another (valid) model written over the registered folder: new bank, new model.json."""
    import hashlib

    from safetensors.torch import load_file, save_file

    bank_path = lab.model_dir / "memory_bank.safetensors"
    tensors = load_file(str(bank_path))
    tensors["memory_bank"] = tensors["memory_bank"] * 1.01
    save_file(tensors, str(bank_path))
    doc = json.loads((lab.model_dir / "model.json").read_text())
    doc["memory_bank_sha256"] = hashlib.sha256(bank_path.read_bytes()).hexdigest()
    (lab.model_dir / "model.json").write_text(json.dumps(doc, indent=2))
    code, out = _inspect_cli(lab, lab.model_dir)
    caught, msg = verify_names(lab, f"model v{lab.model_id}", "memory_bank.safetensors")
    return caught and code != 0, f"{msg}; inspect: {out.splitlines()[-1] if out else code}"


def logged_threshold_headless(lab: Lab) -> Outcome:
    lab.st.set_threshold(lab.sessions["eng"], lab.model_id, 5.0, "fewer false rejects")
    code, out = _inspect_cli(lab, lab.model_dir)
    thr = {lab.st.inspection(i, images=False).threshold for i in _inspection_ids(lab)}
    return code == 0 and thr == {5.0}, f"headless inspect recorded thresholds {sorted(thr)}"


def _inspection_ids(lab: Lab) -> list[int]:
    con = sqlite3.connect(lab.db)
    ids = [r[0] for r in con.execute("SELECT id FROM inspections")]
    con.close()
    return ids


def threshold_bypassed(lab: Lab) -> Outcome:
    """An inspection appended at a threshold not in force: verify names it."""
    thr = float(lab.st.model(lab.model_id).threshold or 1.0)
    lab.forge(
        InspectionRow(uid="a" * 32, station="line-1", source="x", frame_index=0, frame_sha256="0" * 64,
                      frame_path="x.png", model_version_id=lab.model_id, score=thr * 2, threshold=1e6, verdict="OK",
                      anomaly_map=b"", anomaly_map_sha256="0" * 64, latency_ms=1.0, created_at=datetime.now(UTC))
    )  # fmt: skip
    return verify_names(lab, "threshold in force", "inspections")


# ---------------------------------------------------------------- time and conflicts
def backdated(lab: Lab) -> Outcome:
    import numpy as np

    out = refused(
        lambda: lab.st.record_inspection(
            station="line-1",
            source="x",
            frame_index=0,
            frame=np.zeros((8, 8, 3), np.uint8),
            model_version_id=lab.model_id,
            score=0.0,
            threshold=float(lab.st.model(lab.model_id).threshold or 1),
            verdict="OK",
            anomaly_map=np.zeros((8, 8), np.float32),
            created_at=datetime(2020, 1, 1, tzinfo=UTC),
        ),  # fmt: skip
        ValidationError,
    )
    lab.forge(EventRow(kind="note", actor=None, details_json="{}", created_at=datetime(2020, 1, 1, tzinfo=UTC)))
    forged = verify_names(lab, "2020-01-01", "earlier than the record before")
    return out[0] and forged[0], f"{out[1]}; forged: {forged[1]}"


def second_current_decision(lab: Lab) -> Outcome:
    iid = lab.inspect(4, "DEFECT")
    lab.st.record_decision(lab.sessions["op1"], iid, "reject")
    out = refused(
        lambda: lab.st.record_decision(lab.sessions["op2"], iid, "accept", reason_text="fine"), ValidationError
    )
    lab.forge(
        DecisionRow(uid="c" * 32, inspection_id=iid, user_id="op2", decision="accept", reason_text="fine",
                    meaning="reviewed: accepted", created_at=datetime.now(UTC), user_name="OP2 User",
                    user_role="operator", session_id=lab.sessions["op2"].session_id)
    )  # fmt: skip
    forged = verify_names(lab, "second current decision", "'op2'")
    return out[0] and forged[0], f"{out[1]}; forged: {forged[1]}"


# ---------------------------------------------------------------- head anchoring
def head_file_deleted(lab: Lab) -> Outcome:
    lab.inspect(5)
    Path(f"{lab.db}.head.json").unlink()
    code, out = cli("audit", "verify", "--db", lab.db)
    return code != 0 and "missing" in out, out.splitlines()[-1]


def head_file_foreign(lab: Lab) -> Outcome:
    lab.inspect(6)
    p = Path(f"{lab.db}.head.json")
    doc = json.loads(p.read_text())
    doc["store_id"] = "0" * 32
    p.write_text(json.dumps(doc))
    code, out = cli("audit", "verify", "--db", lab.db)
    waived_code, _ = cli("audit", "verify", "--db", lab.db, "--allow-missing-head")
    logged = any(e == "head_file_waived" for e in _event_kinds(lab))
    return code != 0 and "another store" in out and waived_code == 0 and logged, (
        out.splitlines()[-1] + "; with --allow-missing-head: exit 0 and a head_file_waived event"
    )


def _event_kinds(lab: Lab) -> list[str]:
    con = sqlite3.connect(lab.db)
    kinds = [r[0] for r in con.execute("SELECT kind FROM events")]
    con.close()
    return kinds


# ---------------------------------------------------------------- exports
def _pdf_text(path: Path) -> str:
    r = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, timeout=300)
    return r.stdout


def long_reason_pdf(lab: Lab) -> Outcome:
    iid = lab.inspect(7)
    lab.st.record_decision(lab.sessions["op1"], iid, "reject", reason_text="scratch " * 300)  # 2,400 characters
    pdf = lab.root / "out.pdf"
    n = lab.st.export_pdf(lab.sessions["aud"], pdf)
    too_long = refused(
        lambda: lab.st.record_decision(lab.sessions["op1"], lab.inspect(8), "reject", reason_text="x" * 5000),
        ValidationError,
    )
    return n == 1 and pdf.stat().st_size > 0 and too_long[
        0
    ], f"PDF written ({n} decision); above the cap: {too_long[1]}"


def huge_reason_csv(lab: Lab) -> Outcome:
    path = lab.root / "decisions.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerow(["0.png", "reject", "x" * (1 << 20)])
    code, out = cli("inspect", "--model", lab.model_dir, "--input", lab.frames, "--db", lab.db, "--station", "s",
                    "--operator", "op1", "--decisions", path, password=PASSWORDS["op1"])  # fmt: skip
    one_line = len(out.splitlines()) == 1 and "limit is" in out and "unexpected" not in out
    return code != 0 and one_line, out


UNICODE_NAME = "Łukasz Żółć مريم כהן 王小明 😀"
UNICODE_REASON = "Riss sichtbar — شرخ واضح في الحافة — סדק בקצה — 边缘有裂纹 — ひび割れ — 🔍⚠️✅"


def unicode_pdf(lab: Lab) -> Outcome:
    from inspector.audit.pdf_text import missing_glyphs

    lab.st.set_user(lab.sessions["root"], "op1", name=UNICODE_NAME)
    op1 = lab.st.authenticate("op1", PASSWORDS["op1"])
    lab.st.record_decision(op1, lab.inspect(9), "reject", reason_text=UNICODE_REASON)
    pdf = lab.root / "unicode.pdf"
    lab.st.export_pdf(lab.sessions["aud"], pdf)
    missing = missing_glyphs(UNICODE_NAME + UNICODE_REASON)
    text = _pdf_text(pdf)
    found = all(w in text for w in ("Łukasz", "王小明", "边缘有裂纹"))
    return not missing and found, f"glyphs without a font: {sorted(missing) or 'none'}; text extractable: {found}"


def broken_chain_export(lab: Lab) -> Outcome:
    iid = lab.inspect(10, "DEFECT")
    did = lab.st.record_decision(lab.sessions["op1"], iid, "accept", reason_text="looks fine to me")
    other = lab.st.record_decision(lab.sessions["op2"], lab.inspect(11), "accept")
    con = sqlite3.connect(lab.db, isolation_level=None)
    con.execute("DROP TRIGGER decisions_no_update")
    con.execute(f"UPDATE decisions SET reason_code = 'edited' WHERE id = {other}")
    con.close()
    pdf = lab.root / "broken.pdf"
    code, out = cli("audit", "export", "--db", lab.db, "--as", "aud", "--pdf", pdf, password=PASSWORDS["aud"])
    refused_ok = code != 0 and "BROKEN" in out and not pdf.exists()
    forced = refused(lambda: lab.st.export_pdf(lab.sessions["aud"], pdf), ChainBroken)[0]
    lab.st.export_pdf(lab.sessions["aud"], pdf, allow_broken=True)
    text = " ".join(_pdf_text(pdf).split())
    marked = "BROKEN RECORD: edited: record #" in text and "OVERRULES THE MODEL" in text
    return refused_ok and forced and marked, (
        f"export refused (exit {code}): {out.splitlines()[-1][:90]}...; with --allow-broken decision {other} is "
        f"marked BROKEN and decision {did} flagged OVERRULES THE MODEL"
    )


def frame_replaced(lab: Lab) -> Outcome:
    import numpy as np

    from inspector import app_logic
    from inspector.audit import codec

    iid = lab.inspect(12)
    rec = lab.st.inspection(iid, images=False)
    codec.store_frame(np.zeros((48, 64, 3), np.uint8), lab.root / "tmp")
    replacement = next((lab.root / "tmp").rglob("*.png"))
    rec.frame_path.write_bytes(replacement.read_bytes())
    _, caption = app_logic.recorded_view(lab.st, iid)
    return app_logic.FRAME_MISMATCH in caption, f"auditor view: {caption[:90]}"


ATTACKS = (
    Attack("UPDATE users role -> engineer, threshold changed as op1, role set back", role_update_then_back),
    Attack("store's role check patched out: operator logs a threshold change", role_check_bypassed),
    Attack("op2's password hash swapped, then a login as op2", password_hash_swap),
    Attack("User(id='op1') built in Python / minted session passed to the store", hand_built_user),
    Attack("decision appended under a session no login opened", session_bypassed),
    Attack("copy of the model with model.json threshold 1e6, then inspect", threshold_in_copy),
    Attack("model.json input_size edited, then inspect", input_size_edited),
    Attack("registered model folder overwritten with another model", folder_overwritten),
    Attack("threshold 5.0 logged, then headless inspect --model", logged_threshold_headless),
    Attack("inspection appended at a threshold not in force", threshold_bypassed),
    Attack("caller-chosen created_at of 2020 after newer records", backdated),
    Attack("second current decision on one inspection without supersedes", second_current_decision),
    Attack("head file deleted", head_file_deleted),
    Attack("head file given another store_id", head_file_foreign),
    Attack("30 wrong passwords, then the right one", lockout),
    Attack("INSPECTOR_ARGON2_FAST=1 outside the test suite", fast_hash_outside_tests),
    Attack("a password typed into the user-id field", password_as_user_id),
    Attack("2,400-character reason, then export --pdf", long_reason_pdf),
    Attack("--decisions CSV with a 1 MB reason", huge_reason_csv),
    Attack("Arabic, Hebrew, CJK, 'Łukasz', emoji in names and reasons (PDF)", unicode_pdf),
    Attack("user renamed and re-roled after signing", renamed_after_signing),
    Attack("PDF of a broken chain; an accepted DEFECT", broken_chain_export),
    Attack("stored frame file replaced, auditor view", frame_replaced),
)
