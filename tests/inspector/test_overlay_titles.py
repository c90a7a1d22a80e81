"""Panel titles stay readable on narrow frames: the verdict line wraps instead of running off."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.overlay import _wrap, panels

HEADER = "DEFECT score 16.950 / thr 14.047"


def test_a_long_title_wraps_to_the_panel_s_width() -> None:
    lines = _wrap(HEADER, 110)
    assert len(lines) > 1 and " ".join(lines) == HEADER
    assert all(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] + 8 <= 110 for line in lines)
    assert _wrap(HEADER, 400) == [HEADER]


def test_narrow_frames_get_a_taller_title_bar_and_every_tile_shares_it() -> None:
    amap = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    narrow = panels(np.zeros((300, 100, 3), np.uint8), [("anomaly map", amap, 0.0, 1.0, None)], header=HEADER)
    wide = panels(np.zeros((100, 300, 3), np.uint8), [("anomaly map", amap, 0.0, 1.0, None)], header=HEADER)
    # Displayed at 320 px on the long side: the narrow frame is 106 px wide, the wide one 320.
    assert narrow.shape[0] - 320 > wide.shape[0] - 106  # its title took more than one line
    assert wide.shape[0] == 106 + 22  # one line, as before
