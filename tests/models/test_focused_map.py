"""The focused fine map (issue 11): the fine grid searched only under the frame's highest coarse scores."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.explain.gradcam import anomaly_grad_cam
from models.patchcore import PatchCore, PatchCoreConfig
from models.patchcore.serialization import load_patchcore, save_patchcore
from tests.models.conftest import fit_on_flat_frames, flat_frames, map_and_coarse_auroc

TINY = PatchCoreConfig(
    layers=("blocks.1", "blocks.2"),
    input_size=64,
    input_width=96,
    coreset_ratio=0.5,
    pretrained=False,
    feature_stride=8,
    map_focus=0.25,  # otherwise the default map: the focused blend
)


@pytest.fixture(scope="module")
def focused_model() -> PatchCore:
    return fit_on_flat_frames(TINY)


def _grids(model: PatchCore, x: torch.Tensor, focus: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    assert model.fine_map is not None
    with torch.no_grad():
        feats = model.extractor(model.normalize(x))
        _, patch = model.score_embedding(model.embed_features(feats, (64, 96)))
        return patch, model.fine_map.patch_scores(feats, (64, 96), patch, focus)


def test_searched_cells_are_exact_and_the_rest_follow_the_coarse_grid(focused_model: PatchCore) -> None:
    x = flat_frames(2, 9)
    x[0, :, 20:24, 10:60] = 0.0  # a dark line: the frame's highest coarse cells
    patch, every = _grids(focused_model, x, None)
    _, part = _grids(focused_model, x, 0.25)
    b, h, w = every.shape
    up = F.interpolate(patch[:, None].float(), size=(h, w), mode="nearest")[:, 0]
    k = round(0.25 * h * w)
    for i in range(b):
        searched = torch.zeros(h * w, dtype=torch.bool)
        # The highest coarse cells, ties (fine cells under one coarse cell) to the lower position.
        searched[torch.sort(up[i].reshape(-1), descending=True, stable=True).indices[:k]] = True
        searched = searched.reshape(h, w)
        assert int(searched.sum()) == k
        # Searched cells: the exhaustive search's own distances.
        torch.testing.assert_close(part[i][searched], every[i][searched])
        # The others: the coarse scores times one ratio per frame, the median over searched cells
        # (the upper middle value where their number is even).
        ratio = (every[i][searched] / up[i][searched]).sort().values[k // 2]
        torch.testing.assert_close(part[i][~searched], up[i][~searched] * ratio, rtol=1e-4, atol=1e-5)
    # The line's cells are among those searched, and the map is highest there.
    assert float(part[0, 5:6, 2:15].mean()) > float(part[0].median())


def test_a_focus_of_one_or_none_searches_every_cell(focused_model: PatchCore) -> None:
    x = flat_frames(1, 3)
    _, every = _grids(focused_model, x, None)
    _, whole = _grids(focused_model, x, 1.0)
    torch.testing.assert_close(whole, every)


def test_grad_cam_and_predict_show_the_same_focused_map(focused_model: PatchCore) -> None:
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    cam = anomaly_grad_cam(focused_model, x)
    torch.testing.assert_close(cam.anomaly_map, focused_model.predict(x).anomaly_map, rtol=1e-4, atol=1e-4)


def test_focus_is_saved_and_older_files_search_every_cell(focused_model: PatchCore, tmp_path: Path) -> None:
    x = flat_frames(1, 4)
    save_patchcore(focused_model, tmp_path / "m")
    again, _ = load_patchcore(tmp_path / "m")
    assert again.config.map_focus == 0.25
    torch.testing.assert_close(again.predict(x).anomaly_map, focused_model.predict(x).anomaly_map)
    doc_path = tmp_path / "m" / "model.json"
    doc = json.loads(doc_path.read_text())
    del doc["config"]["map_focus"]
    doc_path.write_text(json.dumps(doc))
    old, _ = load_patchcore(tmp_path / "m")
    assert old.config.map_focus is None
    everywhere = replace(focused_model.config, map_focus=None)
    focused_model.config, saved = everywhere, focused_model.config
    try:
        expected = focused_model.predict(x).anomaly_map
    finally:
        focused_model.config = saved
    torch.testing.assert_close(old.predict(x).anomaly_map, expected)


@pytest.mark.parametrize("focus", [0.0, -0.1, 1.5])
def test_a_focus_outside_zero_to_one_is_refused(focus: float) -> None:
    with pytest.raises(ValueError, match="map_focus"):
        PatchCore(replace(TINY, map_focus=focus))


@pytest.mark.parametrize(("kind", "defect"), [("surface", "crack"), ("pill", "dirt")])
def test_focused_blend_localises_thin_cracks_and_specks_better_than_the_coarse_map(kind: str, defect: str) -> None:
    """Pretrained lite0 at 112 px, the settings ``train`` uses: the focused blend must outline
    generated cracks and dirt specks better than the 14x14 coarse map (pooled pixel AUROC)."""
    ours, coarse = map_and_coarse_auroc(PatchCoreConfig(), kind, defect)
    assert ours > coarse + 0.005, (ours, coarse)
