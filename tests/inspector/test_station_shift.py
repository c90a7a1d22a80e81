"""A shift on the station: one model pass per frame, a bounded history, events, per-frame errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inspector.analysis import FrameAnalyser
from inspector.audit import AuditStore
from inspector.cli import main
from inspector.errors import ImageError
from inspector.images import decode_image, read_image
from inspector.pipeline import Inspector
from inspector.sources import FolderSource, open_source
from inspector.station import Station


def station(store: AuditStore, model_dir: Path, **kw) -> Station:
    inspector = Inspector.load(model_dir, "cpu")
    st = Station(store, inspector, "line-1", analyse=FrameAnalyser.load(inspector).analyse, **kw)
    st.register_model(store.authenticate("eng", "eng-pass"))
    return st


def count_backbone_calls(st: Station) -> list[int]:
    calls: list[int] = []
    st.inspector.model.extractor.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_one_backbone_pass_per_frame_gives_score_map_and_gradcam(store, trained_tiny: Path, frames: Path) -> None:
    st = station(store, trained_tiny)
    calls = count_backbone_calls(st)
    items = [o for o in st.run(FolderSource(frames)) if not isinstance(o, str)]
    assert len(items) == 6 and len(calls) == 6  # N frames -> N forward passes (was 2N)
    assert all(it.gradcam is not None and it.gradcam.shape == it.result.image.shape[:2] for it in items)
    assert all("agreement" in it.extras for it in items)
    # The one pass scores as the plain pipeline does (exact search vs certified search).
    plain = Inspector.load(trained_tiny, "cpu").inspect_images([it.result.image for it in items])
    np.testing.assert_allclose([it.result.score for it in items], [r.score for r in plain], rtol=1e-4)
    assert [it.result.verdict for it in items] == [r.verdict for r in plain]


def test_explain_hook_path_still_costs_two_passes(store, trained_tiny: Path, frames: Path) -> None:
    """The old station path (pipeline, then Explainer) for contrast: the counter sees both passes."""
    from inspector.app_logic.operator import default_explainer

    inspector = Inspector.load(trained_tiny, "cpu")
    st = Station(store, inspector, "line-1", explain=default_explainer(inspector))
    st.register_model(store.authenticate("eng", "eng-pass"))
    calls = count_backbone_calls(st)
    items = [o for o in st.run(FolderSource(frames)) if not isinstance(o, str)]
    assert len(calls) == 2 * len(items)


def test_history_keeps_few_frames_and_reloads_older_ones(store, trained_tiny: Path, frames: Path) -> None:
    st = station(store, trained_tiny, keep=2)
    items = [o for o in st.run(FolderSource(frames)) if not isinstance(o, str)]
    assert len(st.history) == 6 and st.history.in_memory == 2
    assert items[-1].result.anomaly_map.dtype == np.float16 and items[-1].gradcam.dtype == np.float16
    op = store.authenticate("ana", "ana-pass")
    first = items[0]
    wrong = "reject" if first.result.verdict != "DEFECT" else "accept"
    st.decide(op, first, wrong, reason_code="other", reason_text="seen by eye")
    old = st.history.get(0)
    assert old is not first and old.extras.get("reloaded")  # back from the audit store
    np.testing.assert_array_equal(old.result.image, first.result.image)
    np.testing.assert_allclose(old.result.anomaly_map, first.result.anomaly_map, rtol=1e-2, atol=1e-3)
    assert old.inspection_id == first.inspection_id and old.decision == wrong and old.gradcam is not None
    corrected = "accept" if wrong == "reject" else "reject"
    st.decide(op, old, corrected, reason_code="other", reason_text="second look")  # supersedes the first
    assert [d.decision for d in store.decisions(current_only=True)] == [corrected]
    assert st.history.get(5) is items[5]


def test_station_events(store, trained_tiny: Path, frames: Path, tmp_path: Path) -> None:
    st = station(store, trained_tiny)
    seen: dict[str, list] = {k: [] for k in ("frame", "skip", "decision", "queue", "model")}
    st.events.frame_ready.connect(seen["frame"].append)
    st.events.frame_skipped.connect(seen["skip"].append)
    st.events.decision_recorded.connect(seen["decision"].append)
    st.events.queue_changed.connect(seen["queue"].append)
    st.events.model_changed.connect(seen["model"].append)
    (frames / "zz_bad.png").write_bytes(b"not a png")
    items = [o for o in st.run(FolderSource(frames)) if not isinstance(o, str)]
    assert seen["frame"] == items and len(seen["skip"]) == 1 and "zz_bad.png" in seen["skip"][0]
    st.decide(store.authenticate("ana", "ana-pass"), items[0], "reject", reason_code="other", reason_text="x")
    assert seen["decision"] == [items[0]]
    st.set_thresholds(st.inspector.thresholds.with_decision(1e9))
    assert seen["model"] == [st.model_version_id]
    assert st.flush_queue() == 0 and seen["queue"] == [0]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` in a few bytes: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bombs_and_huge_frames_are_refused_before_decoding(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(_png_header_only(30000, 30000), "bomb.png")
    with pytest.raises(ImageError, match="above the decoding limit"):
        decode_image(_png_header_only(8000, 8000), "huge.png")
    with pytest.raises(ImageError, match="above the decoding limit"):
        from inspector.images import to_rgb8

        to_rgb8(np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (9000, 9000, 3), (0, 0, 0)), "camera")
    ok = tmp_path / "ok.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(ok)
    assert read_image(ok).shape == (40, 50, 3)


def test_a_bomb_in_the_folder_does_not_end_the_run(store, trained_tiny: Path, frames: Path) -> None:
    (frames / "a_bomb.png").write_bytes(_png_header_only(30000, 30000))
    (frames / "b_huge.png").write_bytes(_png_header_only(8000, 8000))
    st = station(store, trained_tiny)
    out = list(st.run(FolderSource(frames)))
    skipped = [o for o in out if isinstance(o, str)]
    assert len(skipped) == 2 and st.counts.unreadable == 2 and st.counts.inspected == 6
    assert "decompression bomb" in skipped[0] and "megapixels" in skipped[1]


def test_a_truncated_video_says_so(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 255, (48, 64, 3), np.uint8))
    writer.release()
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    frames = list(open_source(cut))
    read = [f for f in frames if f.ok]
    assert 0 < len(read) < 20
    assert not frames[-1].ok and f"{len(read)} frames read of the 20" in frames[-1].error
    assert all(f.ok for f in open_source(path))  # the whole file ends without a complaint


def test_predict_goes_on_past_a_bad_file_and_names_it(trained_tiny: Path, frames: Path, tmp_path: Path) -> None:
    good = sorted(frames.iterdir())[:2]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "pred"
    args = ["predict", "--model", str(trained_tiny), "--out", str(out), str(bad), *map(str, good)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0 and "broken.png" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in out.glob("*.json")) == sorted(f"{p.stem}.json" for p in good)
