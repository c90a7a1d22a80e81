"""The map's one-line description follows model.json: default, coarse, fine alone, old files."""

from __future__ import annotations

from inspector.map_settings import describe_map
from models.patchcore import PatchCoreConfig


def test_the_default_names_the_blend_and_its_focus() -> None:
    line = describe_map(PatchCoreConfig().to_json())
    assert "mean of the score's grid (every 8 px)" in line and "every 4 px" in line and "highest 20%" in line


def test_coarse_fine_alone_and_every_cell() -> None:
    assert "the score's grid (every 8 px), sigma 4" in describe_map(PatchCoreConfig(map_layers=None).to_json())
    alone = describe_map(PatchCoreConfig(map_blend="fine", map_focus=None).to_json())
    assert "alone" in alone and "searched everywhere" in alone
    # A stride-4 score grid has no second bank, whatever map_layers says.
    assert "score's grid (every 4 px)" in describe_map(PatchCoreConfig(feature_stride=4).to_json())
    # A model.json from before the setting existed: the score's grid.
    assert "score's grid" in describe_map({"feature_stride": 8})
