"""The fine anomaly map (issue 11): a finer grid for the map, the image score untouched."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.patchcore import PatchCore, PatchCoreConfig
from models.patchcore.anomaly_map import anomaly_map
from models.patchcore.model import resolve_map_layers
from models.patchcore.serialization import load_patchcore, save_patchcore
from tests.models.conftest import map_and_coarse_auroc

TINY = PatchCoreConfig(
    layers=("blocks.1", "blocks.2"),
    input_size=64,
    coreset_ratio=0.5,
    pretrained=False,
    feature_stride=8,
    map_layers="auto",
)


def _good(n: int, seed: int = 0) -> torch.Tensor:
    return 0.5 + 0.05 * torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def pair() -> tuple[PatchCore, PatchCore]:
    """The same model with and without the fine map, fitted on the same images."""
    out = []
    for cfg in (replace(TINY, map_layers=None), TINY):
        model = PatchCore(cfg)
        model.fit([_good(4, 0), _good(4, 1)])
        out.append(model)
    return out[0], out[1]


def test_auto_picks_pixels_and_the_stride_4_and_8_stages() -> None:
    assert resolve_map_layers(PatchCoreConfig(map_layers="auto")) == ("pixels", "blocks.1", "blocks.2")
    assert resolve_map_layers(PatchCoreConfig(backbone="resnet18", map_layers="auto")) == ("pixels", "layer1", "layer2")
    # A score grid already at stride 4, or the setting off (`train --coarse-map`): no second bank.
    assert resolve_map_layers(PatchCoreConfig(feature_stride=4, map_layers="auto")) == ()
    assert resolve_map_layers(PatchCoreConfig(map_layers=None)) == ()


def test_image_score_is_unchanged_and_the_map_grid_is_finer(pair) -> None:
    coarse, fine = pair
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    a, b = coarse.predict(x), fine.predict(x)
    torch.testing.assert_close(a.score, b.score)
    torch.testing.assert_close(a.patch_scores, b.patch_scores)
    torch.testing.assert_close(a.anomaly_map, anomaly_map(a.patch_scores, (64, 64), coarse.config.sigma))
    with torch.no_grad():
        feats = fine.extractor(fine.normalize(x))
    assert fine.map_patch_scores(feats, b.patch_scores, (64, 64)).shape == (2, 16, 16)  # every 4 px, not 8
    assert not torch.allclose(a.anomaly_map, b.anomaly_map)


def test_map_values_stay_in_the_score_units(pair) -> None:
    """Calibration ties the map's colour range to the decision threshold: on good images the fine
    map must sit where the coarse one does, not in the second bank's own units."""
    coarse, fine = pair
    x = _good(4, 7)
    ratio = fine.predict(x).anomaly_map.median() / coarse.predict(x).anomaly_map.median()
    assert 0.5 < float(ratio) < 2.0
    assert float(fine.fine_map.unit) != 1.0  # the conversion was applied, not assumed


def test_save_and_load_keep_the_fine_map_and_old_models_keep_theirs(pair, tmp_path: Path) -> None:
    coarse, fine = pair
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    save_patchcore(fine, tmp_path / "fine")
    loaded, _ = load_patchcore(tmp_path / "fine")
    torch.testing.assert_close(loaded.predict(x).anomaly_map, fine.predict(x).anomaly_map)
    # A model.json written before the setting existed has no "map_layers": it keeps the score grid.
    save_patchcore(coarse, tmp_path / "old")
    doc_path = tmp_path / "old" / "model.json"
    doc = json.loads(doc_path.read_text())
    del doc["config"]["map_layers"]
    doc_path.write_text(json.dumps(doc))
    old, _ = load_patchcore(tmp_path / "old")
    assert old.fine_map is None
    torch.testing.assert_close(old.predict(x).anomaly_map, coarse.predict(x).anomaly_map)


def test_fine_map_outlines_a_hairline_crack_better() -> None:
    """Pretrained lite0 at the default 112 px, fine map on: thin synthetic cracks on concrete. The coarse 14x14
    map smears them; the fine map must localise them clearly better (pooled pixel AUROC)."""
    fine, coarse = map_and_coarse_auroc(PatchCoreConfig(map_layers="auto", sigma=2.0), "surface", "crack")
    assert fine > coarse + 0.01, (fine, coarse)
