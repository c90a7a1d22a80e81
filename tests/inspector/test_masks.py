"""Ground-truth masks: found under the names public sets use, and a set with some defects
unmasked still gets pixel figures over the ones that have a mask, saying how many."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from inspector.cli import main
from inspector.evaluation import evaluate, format_report
from inspector.manifest import Manifest, build_manifest, find_mask, mask_coverage
from inspector.synthetic import make_sample


def test_masks_are_found_by_the_usual_names(tmp_path: Path) -> None:
    for name in ("a_mask.png", "b_mask.bmp", "c.png", "D_MASK.TIF", "e.png", "e_mask.png", "f_mask.jpg", "f.png"):
        (tmp_path / name).write_bytes(b"x")
    assert find_mask(tmp_path, "a") == tmp_path / "a_mask.png"
    assert find_mask(tmp_path, "b") == tmp_path / "b_mask.bmp"
    assert find_mask(tmp_path, "c") == tmp_path / "c.png"
    assert find_mask(tmp_path, "d") == tmp_path / "D_MASK.TIF"
    assert find_mask(tmp_path, "e") == tmp_path / "e_mask.png"  # MVTec's own name first
    assert find_mask(tmp_path, "f") == tmp_path / "f_mask.jpg"  # then <name>_mask.* before <name>.*
    assert find_mask(tmp_path, "g") is None
    assert find_mask(tmp_path / "absent", "a") is None


def _write(root: Path, n_good: int = 8, n_test: int = 4) -> None:
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / sub).mkdir(parents=True)
    for i in range(n_good):
        cv2.imwrite(str(root / "train/good" / f"g{i:03d}.png"), make_sample("surface", i, None, size=96).image)
    for i in range(n_test):
        cv2.imwrite(str(root / "test/good" / f"t{i:03d}.png"), make_sample("surface", 100 + i, None, size=96).image)
        s = make_sample("surface", 200 + i, "crack", size=96)
        cv2.imwrite(str(root / "test/crack" / f"c{i:03d}.png"), s.image)
        if i % 2 == 0:  # half the defects have a mask, under two naming schemes
            name = f"c{i:03d}_mask.png" if i == 0 else f"c{i:03d}.png"
            cv2.imwrite(str(root / "ground_truth/crack" / name), s.mask)


def test_manifest_reports_masks_and_warns_where_some_are_missing(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _write(root)
    m = build_manifest(root, "mvtec")
    assert mask_coverage(m) == {"crack": (2, 4)}
    masks = sorted(it.mask for it in m.split("test") if it.mask)
    assert masks == ["ground_truth/crack/c000_mask.png", "ground_truth/crack/c002.png"]
    res = CliRunner().invoke(main, ["data", "manifest", str(root), "--layout", "mvtec", "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert "masks: crack 2/4" in res.output
    assert "warning: 2 of 4 'crack' images have no mask in ground_truth/crack" in res.output


def _trained(tmp_path: Path, config) -> tuple[Path, Manifest, Any]:
    """The set of ``_write``, its manifest, and a tiny model trained on it (each test its own:
    one rewrites the masks)."""
    from inspector.pipeline import Inspector
    from inspector.training import train

    root = tmp_path / "set"
    _write(root)
    m = build_manifest(root, "mvtec")
    train(m, root, tmp_path / "model", config=config, device="cpu")
    return root, m, Inspector.load(tmp_path / "model", "cpu")


def test_eval_computes_pixel_figures_over_the_defects_that_have_a_mask(tmp_path: Path, tiny_config) -> None:
    root, m, insp = _trained(tmp_path, tiny_config)
    partial = evaluate(insp, m, root, gradcam=True).report
    assert partial["masked_defects"] == 2 and partial["unmasked_defects"] == 2
    assert partial["pixel_auroc"] is not None and partial["aupro"] is not None
    assert partial["gradcam_pixel_auroc"] is not None
    # The same figures as a manifest that holds only the masked defects (and every good image).
    only = Manifest(m.name, [it for it in m.items if it.mask or not it.is_anomalous])
    full = evaluate(insp, only, root, gradcam=True).report
    assert full["unmasked_defects"] == 0
    for key in ("pixel_auroc", "aupro", "gradcam_pixel_auroc"):
        assert partial[key] == pytest.approx(full[key])
    assert partial["n_anomalous"] == 4 and full["n_anomalous"] == 2  # image figures still use every image
    assert "over the 2 defective images with a mask (2 have none)" in format_report(partial)
    bare = Manifest(m.name, [replace(it, mask=None) for it in m.items])
    none = evaluate(insp, bare, root, gradcam=False).report
    assert none["pixel_auroc"] is None and "n/a: no defective image has a mask" in format_report(none)
    assert np.isfinite(none["image_auroc"])


def test_a_mask_reads_the_same_whatever_its_encoding(tmp_path: Path) -> None:
    from PIL import Image

    from inspector.images import read_mask

    shape = np.zeros((40, 50), np.uint8)
    shape[5:9, 10:20] = 1
    want = shape.astype(bool)
    rgb_green = np.zeros((40, 50, 3), np.uint8)
    rgb_green[..., 1] = shape * 200
    palette = Image.fromarray(shape, mode="L").convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 1 drawn red
    encodings = {
        "grey255.png": Image.fromarray(shape * 255),
        "grey01.png": Image.fromarray(shape),  # 0/1: read as the red channel above 127 it was empty
        "green.png": Image.fromarray(rgb_green),
        "palette.png": palette,
    }
    for name, img in encodings.items():
        img.save(tmp_path / name)
        m = read_mask(tmp_path / name)
        assert m.shape == (40, 50) and m.dtype == np.uint8, name
        assert np.array_equal(m > 127, want), name
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "empty.png")
    assert not read_mask(tmp_path / "empty.png").any()


def test_eval_gives_the_same_pixel_figures_for_0_1_and_0_255_masks(tmp_path: Path, tiny_config) -> None:
    root, m, insp = _trained(tmp_path, tiny_config)
    before = evaluate(insp, m, root, gradcam=False).report
    for it in m.items:
        if it.mask:
            path = root / it.mask
            cv2.imwrite(str(path), (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8))
    after = evaluate(insp, m, root, gradcam=False).report
    assert after["pixel_auroc"] == pytest.approx(before["pixel_auroc"]) and after["aupro"] == pytest.approx(
        before["aupro"]
    )
