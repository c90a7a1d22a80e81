"""Products whose frames vary in size and aspect (issue 11): input size, domain check, eval, station."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inspector.autoconfig import default_input_hw, training_input_hw
from inspector.domain import OUT_OF_DOMAIN
from inspector.manifest import Manifest, ManifestItem, build_manifest
from inspector.synthetic import make_sample

# Training frames as the magnetic tiles come: 103-632 px wide, up to 2.8:1, both orientations.
TRAIN_SIZES = [(103, 288), (632, 226), (300, 300), (226, 632), (288, 103), (400, 250), (250, 400), (180, 180)]
TRAIN_SIZES += [(500, 210), (210, 500), (350, 150), (150, 350)]
ODD_SIZES = [(103, 290), (632, 226), (290, 103), (226, 632), (117, 117), (600, 600), (333, 121)]


def _write_headers(folder: Path, sizes: list[tuple[int, int]]) -> Manifest:
    items = []
    for i, (w, h) in enumerate(sizes):
        name = f"f{i:03d}.png"
        Image.new("L", (w, h)).save(folder / name)
        items.append(ManifestItem(path=name, label="normal", split="train", sha256="0" * 64))
    return Manifest("sizes", items)


def test_the_input_follows_the_median_frame_not_the_first(tmp_path: Path) -> None:
    # The first frame is 2.8:1, the other nine square-ish: the old rule took the first frame's shape.
    sizes = [(226, 632)] + [(300 + 7 * i, 290 + 5 * i) for i in range(9)]
    assert default_input_hw(_write_headers(tmp_path, sizes), tmp_path) == (None, None)


def test_one_shape_keeps_today_s_sizes(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir()
    (tmp_path / "p").mkdir()
    assert default_input_hw(_write_headers(tmp_path / "k", [(250, 627)] * 5), tmp_path / "k") == (280, 112)
    assert default_input_hw(_write_headers(tmp_path / "p", [(112, 112)] * 5), tmp_path / "p") == (None, None)


def test_mixed_orientations_give_a_square_that_keeps_the_short_side() -> None:
    # 60% portrait, 40% landscape at 2.8:1: the median aspect alone would make a 2.8:1 portrait
    # input, squashing the landscape frames 7.8x; a square keeps each frame's short side at 112 px.
    assert training_input_hw([(226, 632)] * 6 + [(632, 226)] * 4) == (312, 312)
    # Mostly portrait at 2:1, a few square ones: the median portrait aspect, 112 px across.
    assert training_input_hw([(250, 500)] * 8 + [(300, 300)] * 2) == (224, 112)
    # A few elongated frames among square ones change nothing.
    assert training_input_hw([(300, 300)] * 8 + [(100, 280), (280, 100)]) == (112, 112)


def _grey_frame(index: int, size: tuple[int, int], defect: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    s = make_sample("surface", index, defect, size=160)
    grey = cv2.cvtColor(s.image, cv2.COLOR_RGB2GRAY)
    w, h = size
    return cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA), cv2.resize(
        s.mask, (w, h), interpolation=cv2.INTER_NEAREST
    )


@pytest.fixture(scope="module")
def variable_product(tmp_path_factory: pytest.TempPathFactory):
    """A grey product of varying frame sizes in MVTec layout, and a tiny model trained on it."""
    from inspector.training import train
    from models.patchcore import PatchCoreConfig

    root = tmp_path_factory.mktemp("variable")
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / sub).mkdir(parents=True)
    for i, size in enumerate(TRAIN_SIZES):
        cv2.imwrite(str(root / "train/good" / f"g{i:03d}.png"), _grey_frame(i, size)[0])
    for i, size in enumerate(ODD_SIZES):
        cv2.imwrite(str(root / "test/good" / f"t{i:03d}.png"), _grey_frame(100 + i, size)[0])
        img, mask = _grey_frame(i, size, "crack")
        cv2.imwrite(str(root / "test/crack" / f"c{i:03d}.png"), img)
        cv2.imwrite(str(root / "ground_truth/crack" / f"c{i:03d}_mask.png"), mask)
    manifest = build_manifest(root, "mvtec", name="variable")
    # Both orientations are common: a square whose side is 112 px x the median long/short ratio (2.36).
    assert default_input_hw(manifest, root) == (264, 264)
    cfg = PatchCoreConfig(
        layers=("blocks.1", "blocks.2"), input_size=64, coreset_ratio=0.25, pretrained=False, feature_stride=8
    )
    out = root / "model"
    train(manifest, root, out, config=cfg, device="cpu")
    return root, manifest, out


def test_eval_on_frames_of_every_size(variable_product) -> None:
    from inspector.evaluation import evaluate
    from inspector.pipeline import Inspector

    root, manifest, model_dir = variable_product
    insp = Inspector.load(model_dir, "cpu")
    assert insp.domain is not None and insp.domain.width == (103, 632)
    rep = evaluate(insp, manifest, root, gradcam=True).report
    assert rep["image_auroc"] is not None and rep["pixel_auroc"] is not None and rep["aupro"] is not None
    assert rep["gradcam_pixel_auroc"] is not None
    assert rep["out_of_domain"] == 0  # in-distribution sizes and aspects are not flagged


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_station_inspects_odd_sizes_and_still_flags_foreign_frames(
    variable_product, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspector.analysis import FrameAnalyser
    from inspector.audit import AuditStore
    from inspector.overlay import overlay, panels
    from inspector.pipeline import Inspector
    from inspector.sources import FolderSource
    from inspector.station import Station

    _, _, model_dir = variable_product
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, size in enumerate(ODD_SIZES):
        (folder / f"a{i}_{size[0]}x{size[1]}.png").write_bytes(_png(_grey_frame(200 + i, size)[0]))
    good = _grey_frame(300, (300, 300))[0]
    (folder / "z_big.png").write_bytes(_png(cv2.resize(good, (4000, 3000))))
    (folder / "z_deep.png").write_bytes(_png(good.astype(np.uint16) * 257))
    (folder / "z_colour.png").write_bytes(_png(make_sample("pill", 0, None, size=300).image))

    insp = Inspector.load(model_dir, "cpu")
    monkeypatch.setenv("INSPECTOR_ARGON2_FAST", "1")
    with AuditStore.open(tmp_path / "audit.db") as store:
        store.add_user(None, "root", "Root", "admin", "root-pass")
        store.add_user(store.authenticate("root", "root-pass"), "eng", "Eng", "engineer", "eng-pass")
        st = Station(store, insp, "line-1", analyse=FrameAnalyser(insp).analyse)
        st.register_model(store.authenticate("eng", "eng-pass"))
        out = list(st.run(FolderSource(folder), batch_size=4))  # batches mix sizes
        assert not [o for o in out if isinstance(o, str)]  # no frame skipped
        items = {o.result.source: o for o in out}
        assert len(items) == len(ODD_SIZES) + 3
        for i, (w, h) in enumerate(ODD_SIZES):
            item = items[f"a{i}_{w}x{h}.png"]
            assert item.result.verdict != OUT_OF_DOMAIN, item.result.out_of_domain
            assert item.result.anomaly_map.shape == (h, w) and item.gradcam.shape == (h, w)
            rgb = np.repeat(_grey_frame(200 + i, (w, h))[0][:, :, None], 3, axis=2)
            assert overlay(rgb, item.result.anomaly_map, 0.0, 1.0, contour_level=0.5).shape == (h, w, 3)
            assert panels(rgb, [("map", item.result.anomaly_map, 0.0, 1.0, None)]).ndim == 3
        for name, words in (("z_big.png", "4000x3000"), ("z_deep.png", "16-bit"), ("z_colour.png", "3-channel")):
            assert items[name].result.verdict == OUT_OF_DOMAIN and words in items[name].result.out_of_domain


def test_pixel_figures_take_frames_of_different_shapes() -> None:
    from inspector import metrics

    rng = np.random.default_rng(0)
    masks = [np.zeros((20, 30), bool), np.zeros((20, 30), bool)]
    masks[1][5:9, 10:20] = True
    maps = [rng.random((20, 30)) + 2.0 * m for m in masks]
    # A list of equal shapes gives what the stack gives.
    assert metrics.pixel_auroc(maps, masks) == metrics.pixel_auroc(np.stack(maps), np.stack(masks))
    assert metrics.aupro(maps, masks) == pytest.approx(metrics.aupro(np.stack(maps), np.stack(masks)))
    # Frames of other shapes count on their own pixels; a perfectly separated map scores 1.
    tall = np.zeros((40, 11), bool)
    tall[3:30, 4:6] = True
    maps2, masks2 = [*maps, tall.astype(float) * 5.0], [*masks, tall]
    assert 0.9 < metrics.pixel_auroc(maps2, masks2) <= 1.0
    assert metrics.aupro([tall.astype(float)], [tall]) == pytest.approx(1.0)
