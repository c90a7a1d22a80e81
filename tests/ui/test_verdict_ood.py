"""The verdict widget names the out-of-domain state in words, on its own colour."""

from __future__ import annotations

from ui.widgets.verdict import VerdictWidget


def test_out_of_domain_is_shown_in_words(qtbot) -> None:
    w = VerdictWidget()
    qtbot.addWidget(w)
    w.set_verdict("REVIEW")
    review_style = w.styleSheet()
    w.set_verdict("OOD")
    assert w.text() == "OUT-OF-DOMAIN" and w.verdict == "OOD"
    assert w.styleSheet() != review_style
    w.set_verdict(None)
    assert w.text() == "waiting"
