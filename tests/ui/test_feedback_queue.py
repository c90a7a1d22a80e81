"""The engineer's feedback queue widget: lists candidates with their frame, rulings reach the store."""

from __future__ import annotations

import numpy as np

from inspector.audit.feedback import candidates
from ui.feedback_queue import FeedbackQueueWidget


def _candidate(store, ana, verdict: str, decision: str, code: str | None, text: str | None, seed: int) -> int:
    frame = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    th = store.model(store.test_model_id).threshold  # the store refuses any other threshold
    score = th * 1.2 if verdict == "DEFECT" else th * 0.5
    iid = store.record_inspection(
        station="line-1", source=f"f{seed}.png", frame_index=seed, frame=frame,
        model_version_id=store.test_model_id, score=score, threshold=th, verdict=verdict,
        anomaly_map=np.zeros((32, 32), np.float32),
    )  # fmt: skip
    return store.record_decision(ana, iid, decision, reason_code=code, reason_text=text)


def test_queue_lists_shows_frame_and_rules(qtbot, store, make_session) -> None:
    ana = store.authenticate("ana", "ana-pass")
    first = _candidate(store, ana, "DEFECT", "reject", "new-defect", None, 1)
    second = _candidate(store, ana, "OK", "reject", "scratch", "scratch on the rim", 2)
    _candidate(store, ana, "OK", "accept", None, None, 3)  # agrees with the model: not a candidate
    view = FeedbackQueueWidget(make_session("eng"))
    qtbot.addWidget(view)
    assert view.table.rowCount() == 2 and view.table.item(1, 4).text() == "scratch on the rim"
    view.table.selectRow(0)
    assert view.frame.frame() is not None and view.frame.frame().shape == (32, 32, 3)
    view.confirm_defect("chip")
    assert view.table.rowCount() == 1 and int(view.table.item(0, 0).text()) == second
    view.table.selectRow(0)
    view.dismiss("operator slip")
    assert view.table.rowCount() == 0
    ruled = {c.id: c for c in candidates(store, status=None)}
    assert ruled[first].defect_type == "chip" and ruled[second].status == "dismissed"


def test_operator_cannot_rule(qtbot, store, make_session) -> None:
    ana = store.authenticate("ana", "ana-pass")
    _candidate(store, ana, "DEFECT", "accept", None, "glare", 4)
    view = FeedbackQueueWidget(make_session("ana"))
    qtbot.addWidget(view)
    view.table.selectRow(0)
    view.confirm_good()
    assert "only engineer" in view.status.text() and view.table.rowCount() == 1
