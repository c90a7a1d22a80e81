"""Out-of-domain frames: unlike the training images, they get the OOD state, never a verdict."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inspector.audit import AuditStore
from inspector.cli import main
from inspector.domain import OUT_OF_DOMAIN, profile_frames
from inspector.images import SourceFormat, decode_image_with_format
from inspector.pipeline import Inspector
from inspector.sources import FolderSource
from inspector.station import Station
from inspector.synthetic import make_sample


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def colour_pills() -> list[np.ndarray]:
    return [make_sample("pill", i, None, size=96).image for i in range(8)]


@pytest.fixture(scope="module")
def colour_profile(colour_pills):
    return profile_frames([(im, SourceFormat(3, 8)) for im in colour_pills])


def test_good_frames_of_the_same_product_pass(colour_profile) -> None:
    for i in range(20, 26):
        frame = make_sample("pill", i, None, size=96).image
        assert colour_profile.check(frame, SourceFormat(3, 8)) is None
    assert colour_profile.check(make_sample("pill", 30, "dirt", size=96).image) is None  # a defect is in domain


def test_defects_of_a_faintly_coloured_product_stay_in_domain() -> None:
    """A chipped rim lowers a faint product's colourfulness (the demo's pills: 0.0078 against 0.0184
    to 0.0290 in training, measured); only a grey frame's near-zero colourfulness is out of domain."""
    from inspector.domain import _limits

    low, _ = _limits("colourfulness", 0.0184, 0.0290)
    assert 0.0 < low < 0.0078
    profile = profile_frames([(make_sample("pill", i, None).image, SourceFormat(3, 8)) for i in range(16)])
    grey = np.repeat(np.asarray(Image.fromarray(make_sample("pill", 99, None).image).convert("L"))[:, :, None], 3, 2)
    assert "greyscale frame" in (profile.check(grey, None) or "")


def test_greyscale_photo_of_a_colour_product_is_out_of_domain(colour_profile) -> None:
    frame = make_sample("pill", 40, None, size=96).image
    grey = np.asarray(Image.fromarray(frame).convert("L"))
    decoded, fmt = decode_image_with_format(_png(grey), "grey.png")
    assert fmt == SourceFormat(1, 8)
    assert "1-channel (greyscale)" in colour_profile.check(decoded, fmt)
    # The same grey pixels saved as RGB (or from a camera, format unknown): caught by colourfulness.
    as_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    assert colour_profile.check(as_rgb, None).startswith("greyscale frame: colourfulness 0.00")


def test_16_bit_grey_frame_is_out_of_domain_for_an_8_bit_grey_model() -> None:
    rng = np.random.default_rng(0)
    greys = [np.repeat((100 + 20 * rng.random((80, 120))).astype(np.uint8)[:, :, None], 3, 2) for _ in range(6)]
    profile = profile_frames([(g, SourceFormat(1, 8)) for g in greys])
    deep = (greys[0][:, :, 0].astype(np.uint16) * 257).astype(np.uint16)  # same picture, 16-bit file
    decoded, fmt = decode_image_with_format(_png(deep), "deep.png")
    assert fmt == SourceFormat(1, 16)  # the bit depth survives decoding to 8-bit RGB
    assert profile.check(greys[1], SourceFormat(1, 8)) is None
    assert profile.check(decoded, fmt) == "16-bit frame; the model was trained on 8-bit images"


def test_4000x3000_frame_is_out_of_domain(colour_profile, colour_pills) -> None:
    big = np.asarray(Image.fromarray(colour_pills[0]).resize((4000, 3000)))
    reason = colour_profile.check(big, SourceFormat(3, 8))
    assert reason is not None and reason.startswith("frame is 4000x3000 pixels; training images were 96 x 96")


def test_dark_frame_is_out_of_domain(colour_profile, colour_pills) -> None:
    dark = (colour_pills[0] // 8).astype(np.uint8)
    assert "median" in colour_profile.check(dark, SourceFormat(3, 8))


def test_pipeline_station_cli_and_audit_show_the_state(
    trained_tiny, synthetic_pills, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, manifest, _ = synthetic_pills
    good = np.asarray(Image.open(root / manifest.split("test")[0].path).convert("RGB"))
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a_good.png").write_bytes(_png(good))
    (folder / "b_grey.png").write_bytes(_png(np.asarray(Image.fromarray(good).convert("L"))))
    deep = np.asarray(Image.fromarray(good).convert("L")).astype(np.uint16) * 257
    (folder / "c_deep.png").write_bytes(_png(deep))
    (folder / "d_big.png").write_bytes(_png(np.asarray(Image.fromarray(good).resize((4000, 3000)))))

    inspector = Inspector.load(trained_tiny, "cpu")
    assert inspector.domain is not None and inspector.domain.channels == [3]
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")
    with AuditStore.open(tmp_path / "audit.db") as store:
        store.add_user(None, "root", "Root", "admin", "root-pass")
        admin = store.authenticate("root", "root-pass")
        store.add_user(admin, "eng", "Eng", "engineer", "eng-pass")
        eng = store.authenticate("eng", "eng-pass")
        st = Station(store, inspector, "line-1")
        st.register_model(eng)
        items = {it.result.source: it for it in st.run(FolderSource(folder)) if not isinstance(it, str)}
        assert items["a_good.png"].result.verdict != OUT_OF_DOMAIN
        for name, words in (("b_grey.png", "1-channel"), ("c_deep.png", "1-channel"), ("d_big.png", "4000x3000")):
            item = items[name]
            assert item.result.verdict == OUT_OF_DOMAIN and words in item.result.out_of_domain
            assert store.inspection(item.inspection_id, images=False).verdict == OUT_OF_DOMAIN
            assert words in store.out_of_domain_reason(item.inspection_id)
        assert store.out_of_domain_reason(items["a_good.png"].inspection_id) is None
        assert store.verify().ok
        assert st.counts.verdicts[OUT_OF_DOMAIN] == 3

    res = CliRunner().invoke(
        main,
        [
            "inspect",
            "--model",
            str(trained_tiny),
            "--input",
            str(folder),
            "--db",
            str(tmp_path / "audit.db"),
            "--station",
            "line-2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "d_big.png: OUT-OF-DOMAIN, routed to review: frame is 4000x3000 pixels" in res.output
    assert "3 OUT-OF-DOMAIN)" in res.output
    res = CliRunner().invoke(
        main, ["predict", "--model", str(trained_tiny), "--out", str(tmp_path / "pred"), str(folder / "b_grey.png")]
    )
    assert res.exit_code == 0, res.output
    assert "b_grey.png: OUT-OF-DOMAIN, routed to review: 1-channel (greyscale) frame" in res.output


def test_big_chips_stay_in_domain_and_low_contrast_frames_do_not() -> None:
    """A chip that takes the demo pill below a quarter of the frame collapses the grey interquartile
    range (0.14 against 0.39 to 0.58 in training: chip 4 was flagged before the pair rule), while
    the 10-90% range stays put; a frame whose contrast is squeezed around its own medians moves both."""
    profile = profile_frames([(make_sample("pill", i, None).image, SourceFormat(3, 8)) for i in range(64)])
    for i in (4, 5):
        assert profile.check(make_sample("pill", i, "chip").image, SourceFormat(3, 8)) is None
    frame = make_sample("pill", 70, None).image.astype(np.float32)
    median = np.median(frame.reshape(-1, 3), axis=0)
    squeezed = np.clip(median + (frame - median) * 0.3, 0, 255).astype(np.uint8)
    reason = profile.check(squeezed, SourceFormat(3, 8)) or ""
    assert "contrast" in reason or "10-90%" in reason, reason
