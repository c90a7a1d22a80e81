"""The CLI's progress bars leave the lines it prints whole."""

from __future__ import annotations

import pytest

from inspector.cli.common import StageBars


def test_a_line_printed_during_work_starts_on_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    bars = StageBars(enabled=True)
    bars("calibration", 64, 64)  # a finished stage whose bar is still open: tqdm ends it with no newline
    bars.echo("image AUROC 1.0000")
    out, err = capsys.readouterr()
    assert "calibration" in err and err.endswith("\n")
    assert out == "image AUROC 1.0000\n"
    assert bars.bars == {}


def test_disabled_bars_print_the_line_only(capsys: pytest.CaptureFixture[str]) -> None:
    bars = StageBars(enabled=False)
    bars("calibration", 3, 64)
    bars.echo("done")
    out, err = capsys.readouterr()
    assert (out, err) == ("done\n", "")
