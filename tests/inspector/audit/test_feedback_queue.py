"""The feedback queue: which decisions become candidates, the engineer's rulings, and the chain."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import PASSWORDS, Seeded, inspect_one

from inspector.audit import NotFound, PermissionDenied, ValidationError
from inspector.audit.feedback import candidates, confirm, dismiss, events
from inspector.cli import main
from inspector.feedback_data import confirmed_good_manifest


def _decide(s: Seeded, i: int, verdict: str, decision: str, code: str | None = None, text: str | None = None) -> int:
    iid = inspect_one(s, i, verdict)
    return s.store.record_decision(s.op, iid, decision, reason_code=code, reason_text=text)


@pytest.fixture
def queue(seeded: Seeded) -> dict[str, int]:
    return {
        "false_reject": _decide(seeded, 1, "OK", "reject", "scratch", "scratch under the lamp"),
        "false_alarm": _decide(seeded, 2, "DEFECT", "accept", None, "glare, part is fine"),
        "review_ok": _decide(seeded, 3, "REVIEW", "accept"),
        "coded_reject": _decide(seeded, 4, "DEFECT", "reject", "new-defect"),
        "plain_reject": _decide(seeded, 5, "DEFECT", "reject"),
        "plain_accept": _decide(seeded, 6, "OK", "accept"),
    }


def test_overrules_and_coded_rejects_become_candidates(seeded: Seeded, queue: dict[str, int]) -> None:
    listed = {c.id: c for c in candidates(seeded.store)}
    want = {queue[k] for k in ("false_reject", "false_alarm", "review_ok", "coded_reject")}
    assert set(listed) == want
    assert listed[queue["coded_reject"]].why == "reject with reason"
    assert listed[queue["false_reject"]].decision.reason_text == "scratch under the lamp"
    assert all(c.status == "open" for c in listed.values())


def test_rulings_are_logged_final_and_engineer_only(seeded: Seeded, queue: dict[str, int]) -> None:
    st = seeded.store
    with pytest.raises(PermissionDenied):
        confirm(st, seeded.op, queue["false_alarm"], "good")
    with pytest.raises(ValidationError, match="defect type is required"):
        confirm(st, seeded.eng, queue["coded_reject"], "defect")
    with pytest.raises(NotFound, match="not in the feedback queue"):
        confirm(st, seeded.eng, queue["plain_accept"], "good")
    confirm(st, seeded.eng, queue["false_alarm"], "good")
    confirm(st, seeded.eng, queue["coded_reject"], "defect", "chip")
    dismiss(st, seeded.eng, queue["review_ok"], "borderline, nothing to learn")
    with pytest.raises(ValidationError, match="already ruled"):
        dismiss(st, seeded.eng, queue["false_alarm"], "changed my mind")
    assert [c.id for c in candidates(st)] == [queue["false_reject"]]
    ruled = {c.id: c for c in candidates(st, status=None)}
    assert ruled[queue["coded_reject"]].defect_type == "chip" and ruled[queue["coded_reject"]].ruled_by == "eng"
    assert ruled[queue["review_ok"]].status == "dismissed"
    kinds = [k for k in ("feedback_confirmed", "feedback_dismissed") for _ in events(st, k)]
    assert kinds.count("feedback_confirmed") == 2 and kinds.count("feedback_dismissed") == 1
    assert st.verify().ok
    manifest, root = confirmed_good_manifest(st)
    assert len(manifest.items) == 1 and (root / manifest.items[0].path).is_file()


def test_feedback_cli_lists_confirms_and_dismisses(
    seeded: Seeded, queue: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(seeded.path)
    run = CliRunner().invoke
    monkeypatch.setenv("INSPECTOR_PASSWORD", PASSWORDS["eng"])
    out = run(main, ["feedback", "list", "--db", db])
    assert out.exit_code == 0 and "4 candidate(s)" in out.output and "scratch under the lamp" in out.output
    bad = run(main, ["feedback", "confirm", str(queue["false_alarm"]), "--good", "--defect", "chip", "--as", "eng"])
    assert bad.exit_code != 0 and "exactly one" in bad.output
    ok = run(main, ["feedback", "confirm", str(queue["coded_reject"]), "--defect", "chip", "--as", "eng", "--db", db])
    assert ok.exit_code == 0, ok.output
    gone = run(main, ["feedback", "dismiss", "999", "--reason", "x", "--as", "eng", "--db", db])
    assert gone.exit_code == 1 and "not in the feedback queue" in gone.output
    out = run(main, ["feedback", "list", "--db", db, "--all"])
    assert "confirmed" in out.output and "defect:chip by eng" in out.output
    details = events(seeded.store, "feedback_confirmed")[0][2]
    assert details["decision_id"] == queue["coded_reject"] and json.dumps(details)
