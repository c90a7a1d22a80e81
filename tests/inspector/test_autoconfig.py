"""The settings search: it picks the best candidate within the budget, respects pins, records why."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inspector.autoconfig import (
    BudgetError,
    Candidate,
    Scored,
    SearchOptions,
    format_table,
    pick,
    select_config,
)
from inspector.synthetic import make_sample
from inspector.synthetic_defects import KINDS, defective_set, foreground, paste_defect
from models.patchcore import PatchCoreConfig

BASE = PatchCoreConfig(pretrained=False, input_size=64)
ONE_BACKBONE = ("efficientnet_lite0",)
# Two stage sets and one ratio keep the searches in these tests to a few seconds.
FAST = {
    "backbones": ONE_BACKBONE,
    "layer_sets": ((("blocks.1", "blocks.2"), 8), (("blocks.2", "blocks.3"), 8)),
    "ratios": (0.25,),
}


def _scored(name: int, img: float, ms: float, budget: float = 33.0) -> Scored:
    c = Candidate("efficientnet_lite0", ("blocks.2",), (64 + 8 * name, 64))
    return Scored(c, ms, ms <= budget, image_auroc=img, pixel_auroc=img, aupro=img)


def test_pick_takes_the_best_within_budget_and_refuses_over_budget() -> None:
    fast_ok, slow_best, mid = _scored(0, 0.90, 10), _scored(1, 0.99, 50), _scored(2, 0.95, 20)
    assert pick([fast_ok, slow_best, mid], allow_over=False, tolerance=0.0) is mid
    assert pick([fast_ok, slow_best, mid], allow_over=True, tolerance=0.0) is slow_best
    assert pick([slow_best], allow_over=False, tolerance=0.0) is None


def test_pick_prefers_the_cheaper_of_near_ties() -> None:
    a, b = _scored(0, 0.950, 20), _scored(1, 0.953, 8)
    assert pick([a, b], allow_over=False, tolerance=0.005) is b
    assert pick([a, b], allow_over=False, tolerance=0.0) is b  # b is also strictly better
    c = _scored(2, 0.960, 25)
    assert pick([a, b, c], allow_over=False, tolerance=0.0) is c


@pytest.fixture(scope="module")
def good_images() -> list[np.ndarray]:
    return [make_sample("pill", i, None, size=64).image for i in range(16)]


def test_pick_keeps_the_incumbent_unless_beaten_beyond_chance() -> None:
    default, better_raw, beyond = _scored(0, 0.90, 10), _scored(1, 0.95, 12), _scored(2, 0.93, 14)
    better_raw.gain_low, beyond.gain_low = -0.01, 0.004  # bounds as the bootstrap would record them
    assert pick([default, better_raw], allow_over=False, tolerance=0.0, incumbent=default) is default
    assert pick([default, better_raw, beyond], allow_over=False, tolerance=0.0, incumbent=default) is beyond
    assert pick([default, better_raw], allow_over=False, tolerance=0.0) is better_raw  # no incumbent: raw score
    slow_default = _scored(3, 0.90, 50)  # over budget: it cannot be kept, the raw score decides
    assert pick([slow_default, better_raw], allow_over=False, tolerance=0.0, incumbent=slow_default) is better_raw


def test_search_keeps_the_defaults_unless_a_candidate_beats_them(good_images) -> None:
    _, sel = select_config(good_images, base=BASE, pinned={"input_size": 64}, n_fit=8, n_eval=4, **FAST)
    doc = sel.to_json()
    assert doc["incumbent"] == sel.scored[0].candidate.name  # what train uses without a search
    if sel.chosen is sel.scored[0]:
        assert "kept the settings used without a search" in sel.reason
        beaten = [s for s in sel.scored[1:] if s.gain_low is not None and s.gain_low > 0]
        if beaten:  # beyond chance, yet within the tolerance and not clearly cheaper: said so
            assert "beat them beyond chance but by less than" in sel.reason
            assert all(s.ms_per_frame > 0.8 * sel.chosen.ms_per_frame for s in beaten)
        else:
            assert "no candidate beat them beyond chance" in sel.reason
    else:
        assert sel.chosen.gain_low is not None and sel.chosen.gain_low > 0 and "beyond chance" in sel.reason
    assert "default" in format_table(doc)


def test_search_chooses_the_best_scored_candidate_and_records_all(good_images) -> None:
    config, sel = select_config(
        good_images, base=BASE, pinned={"input_size": 64}, n_fit=8, n_eval=4, tolerance=0.0,
        require_evidence=False, **FAST
    )
    scored = [s for s in sel.scored if s.criterion is not None and s.within_budget]
    assert len(sel.scored) == 2 and scored
    assert sel.chosen.criterion == max(s.criterion for s in scored)
    assert config == sel.chosen.candidate.config(BASE)
    assert config.pretrained is False and config.input_size == 64
    doc = json.loads(json.dumps(sel.to_json()))
    assert doc["chosen"] == sel.chosen.candidate.name
    assert {c["candidate"]["name"] for c in doc["candidates"]} == {s.candidate.name for s in sel.scored}
    assert all(0 <= c["image_auroc"] <= 1 for c in doc["candidates"] if c["image_auroc"] is not None)
    assert sel.chosen.candidate.name in format_table(doc)


def test_pinned_settings_are_respected(good_images) -> None:
    pinned = {"input_size": 64, "layers": ("blocks.2", "blocks.3"), "coreset_ratio": 0.2}
    config, sel = select_config(good_images, base=BASE, pinned=pinned, n_fit=8, n_eval=4, **FAST)
    assert config.layers == ("blocks.2", "blocks.3") and config.coreset_ratio == 0.2 and config.input_size == 64
    assert all(s.candidate.layers == ("blocks.2", "blocks.3") for s in sel.scored)
    assert all(s.candidate.coreset_ratio == 0.2 for s in sel.scored)


def test_over_budget_candidates_are_refused_unless_allowed(good_images) -> None:
    kw = {"base": BASE, "pinned": {"input_size": 64}, "n_fit": 8, "n_eval": 4, **FAST}
    with pytest.raises(BudgetError, match="budget"):
        select_config(good_images, budget_ms=0.001, **kw)
    _, sel = select_config(good_images, budget_ms=0.001, allow_over_budget=True, **kw)
    assert not sel.chosen.within_budget and sel.chosen.criterion is not None
    assert "allowed" in sel.reason


def test_train_with_search_writes_the_choice_into_model_json(synthetic_pills, tmp_path) -> None:
    from inspector.training import train

    root, manifest, _ = synthetic_pills
    opts = SearchOptions(pinned={"input_size": 64}, n_fit=8, n_eval=4, **FAST)
    res = train(manifest, root, tmp_path / "m", config=BASE, device="cpu", holdout_share=0.25, search=opts)
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    search = doc["metadata"]["settings_search"]
    assert res.selection is not None and search["chosen"] == res.selection.chosen.candidate.name
    assert len(search["candidates"]) == len(res.selection.scored) == 2
    chosen = res.selection.chosen.candidate
    assert tuple(doc["config"]["layers"]) == chosen.layers
    assert doc["config"]["coreset_ratio"] == 0.25 and doc["config"]["pretrained"] is False
    from inspector.app_logic import settings_report

    report = settings_report(tmp_path / "m")  # what the engineer view shows
    flat = " ".join(report.split())  # long lines are wrapped to the table's width
    assert f"chosen: {search['chosen']}" in flat and " ".join(search["reason"].split()) in flat
    assert "anomaly map: mean of the score's grid" in flat
    lines = report.splitlines()
    rows = [line for line in lines if not line.startswith(("* chosen", "(", "anomaly map", "  "))]
    assert max(map(len, lines)) == max(map(len, rows))  # the map's line wrapped, no wider than the table


def test_train_without_search_keeps_the_given_settings(synthetic_pills, tmp_path) -> None:
    from inspector.training import train

    root, manifest, _ = synthetic_pills
    res = train(manifest, root, tmp_path / "m", config=BASE, device="cpu", holdout_share=0.25)
    assert res.selection is None
    assert "given settings" in (tmp_path / "m" / "model.json").read_text()
    from inspector.app_logic import settings_report

    assert "not searched" in settings_report(tmp_path / "m")
    assert "anomaly map: mean of the score's grid" in settings_report(tmp_path / "m")  # the default map
    assert "cannot read" in settings_report(tmp_path / "nowhere")
    odd = tmp_path / "odd"
    odd.mkdir()
    for doc, said in (
        ([1, 2], "not searched"),  # not an object at all
        ({"config": "x", "metadata": {"settings_search": {"candidates": [{"no": "fields"}]}}}, "unreadable"),
    ):
        (odd / "model.json").write_text(json.dumps(doc))
        assert said in settings_report(odd)


def test_synthetic_defects_have_masks_and_change_only_near_them(good_images) -> None:
    rng = np.random.default_rng(0)
    for kind in KINDS:
        img = good_images[0]
        out, mask, got = paste_defect(img, good_images[1], rng, kind)
        assert got in KINDS and mask.any() and out.shape == img.shape
        changed = np.abs(out.astype(int) - img.astype(int)).max(axis=2) > 8
        near = np.zeros_like(mask, bool)
        ys, xs = np.nonzero(mask)
        near[max(0, ys.min() - 4) : ys.max() + 5, max(0, xs.min() - 4) : xs.max() + 5] = True
        assert changed.any() and not (changed & ~near).any(), kind
    a = defective_set(good_images[:3], good_images[3:], 2, seed=5)
    b = defective_set(good_images[:3], good_images[3:], 2, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))


def test_foreground_finds_the_pill_not_a_full_texture() -> None:
    pill = make_sample("pill", 0, None, size=96).image
    fg = foreground(pill)
    assert fg is not None and 0.1 < fg.mean() < 0.6 and fg[48, 48]
    surface = make_sample("surface", 0, None, size=96).image
    assert foreground(surface) is None


def test_without_search_elongated_frames_keep_their_aspect(tmp_path) -> None:
    from PIL import Image

    from inspector.autoconfig import default_input_hw, input_sizes
    from inspector.manifest import Manifest, ManifestItem

    assert input_sizes((627, 250))[-1] == (280, 112)  # ksdd's portrait commutators, 112 px across
    for name, (w, h), expected in (("tall.png", (250, 627), (280, 112)), ("square.png", (225, 225), (None, None))):
        Image.new("RGB", (w, h)).save(tmp_path / name)
        item = ManifestItem(path=name, label="normal", split="train", sha256="0" * 64)
        assert default_input_hw(Manifest(name, [item]), tmp_path) == expected


def test_cli_train_searches_by_default_and_keeps_the_choice(synthetic_pills, tmp_path) -> None:
    """``inspector train`` with nothing pinned chooses its settings itself and says how."""
    from click.testing import CliRunner

    from inspector.cli import main

    root, _, path = synthetic_pills
    args = ["train", "--manifest", str(path), "--root", str(root), "--out", str(tmp_path / "m"), "--device", "cpu"]
    res = CliRunner().invoke(main, [*args, "--layers", "blocks.2,blocks.3", "--coreset-ratio", "0.25"])
    assert res.exit_code == 0, res.output
    search = json.loads((tmp_path / "m" / "model.json").read_text())["metadata"]["settings_search"]
    assert search["incumbent"] and len(search["candidates"]) >= 2  # sizes and backbones were tried
    assert f"* chosen: {search['chosen']}" in res.output and "gain>=" in res.output


def test_too_few_images_for_a_search_train_with_the_given_settings(synthetic_pills, tmp_path) -> None:
    from inspector.manifest import Manifest
    from inspector.training import MIN_SEARCH_IMAGES, train

    root, manifest, _ = synthetic_pills
    few = Manifest("few", manifest.split("train")[: MIN_SEARCH_IMAGES - 1])
    res = train(few, root, tmp_path / "m", config=BASE, device="cpu", search=SearchOptions(**FAST))
    assert res.selection is None and any("too few for the settings search" in w for w in res.warnings)
    search = json.loads((tmp_path / "m" / "model.json").read_text())["metadata"]["settings_search"]
    assert search["chosen_by"] == "given settings" and "too few" in search["note"]


def test_the_engineer_view_trains_elongated_frames_at_their_aspect(tmp_path) -> None:
    from PIL import Image

    from inspector.app_logic.engineer import training_config
    from inspector.manifest import Manifest, ManifestItem

    items = []
    for i in range(4):
        name = f"f{i}.png"
        Image.new("RGB", (120, 300)).save(tmp_path / name)  # 2.5:1, portrait
        items.append(ManifestItem(path=name, label="normal", split="train", sha256="0" * 64))
    tall = Manifest("tall", items)
    cfg = training_config(None, tall, tmp_path)
    assert cfg is not None and cfg.input_hw == (280, 112)  # 112 px across, the height in proportion
    assert training_config(BASE, tall, tmp_path) is BASE  # given settings stay


def test_cli_train_keeps_the_aspect_when_too_few_images_for_a_search(tmp_path) -> None:
    """The search is skipped below MIN_SEARCH_IMAGES; the input still follows the frames' shape."""
    from click.testing import CliRunner
    from PIL import Image

    from inspector.cli import main
    from inspector.images import sha256_file
    from inspector.manifest import Manifest, ManifestItem

    rng = np.random.default_rng(0)
    items = []
    for i in range(5):
        name = f"f{i}.png"
        Image.fromarray(rng.integers(0, 255, (300, 120, 3), dtype=np.uint8)).save(tmp_path / name)
        items.append(ManifestItem(path=name, label="normal", split="train", sha256=sha256_file(tmp_path / name)))
    Manifest("tall", items).save(tmp_path / "tall.json")
    args = ["train", "--manifest", str(tmp_path / "tall.json"), "--root", str(tmp_path), "--out", str(tmp_path / "m")]
    res = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "too few for the settings search" in res.output
    cfg = json.loads((tmp_path / "m" / "model.json").read_text())["config"]
    assert (cfg["input_size"], cfg["input_width"]) == (280, 112)


def test_search_times_the_sharper_map_but_scores_without_a_stand_in_bank(good_images, monkeypatch) -> None:
    """The budget must hold for what ``train`` builds (the fine map included); the stand-in fine
    bank used for timing holds random rows, so it must be gone before the candidate is scored."""
    import inspector.candidate_scoring as cs

    seen: list[tuple[bool, tuple[str, ...]]] = []
    scored_with_fine: list[bool] = []
    real_measure, real_pixel_map = cs.measure_ms, cs.PatchCore.pixel_map

    def measure(model, probe, repeats=3):  # type: ignore[no-untyped-def]
        seen.append((model.fine_map is not None and model.fine_map.is_fitted, tuple(model.extractor.layers)))
        return real_measure(model, probe, repeats=1)

    def pixel_map(self, *a, **k):  # type: ignore[no-untyped-def]
        scored_with_fine.append(self.fine_map is not None and self.fine_map.is_fitted)
        return real_pixel_map(self, *a, **k)

    monkeypatch.setattr(cs, "measure_ms", measure)
    monkeypatch.setattr(cs.PatchCore, "pixel_map", pixel_map)
    sharp = PatchCoreConfig(pretrained=False, input_size=64)  # the default: the focused fine map on
    select_config(good_images, base=sharp, pinned={"input_size": 64}, n_fit=8, n_eval=4, **FAST)
    assert seen and all(fitted for fitted, _ in seen)
    assert all({"pixels", "blocks.1", "blocks.2"} <= set(layers) for _, layers in seen)
    assert scored_with_fine and not any(scored_with_fine)
    seen.clear()
    coarse = PatchCoreConfig(pretrained=False, input_size=64, map_layers=None)  # train --coarse-map
    select_config(good_images, base=coarse, pinned={"input_size": 64}, n_fit=8, n_eval=4, **FAST)
    assert seen and not any(fitted for fitted, _ in seen)


def test_settings_within_budget_only_without_the_sharper_map_get_the_coarse_map(good_images, monkeypatch) -> None:
    """Over the budget only because of the fine map: keep the settings (they decide the verdicts)
    and build the score grid's map, and say so; allowed over budget, the sharper map stays."""
    import inspector.candidate_scoring as cs

    def cost(model, probe, repeats=3):  # type: ignore[no-untyped-def]
        return 12.0 if model.fine_map is not None and model.fine_map.is_fitted else 6.0

    monkeypatch.setattr(cs, "measure_ms", cost)
    sharp = PatchCoreConfig(pretrained=False, input_size=64)
    kw = {"base": sharp, "pinned": {"input_size": 64}, "n_fit": 8, "n_eval": 4, **FAST}
    cfg, sel = select_config(good_images, budget_ms=10.0, **kw)
    assert cfg.map_layers is None and sel.chosen.coarse_map and sel.chosen.sharp_map_ms == 12.0
    assert sel.chosen.within_budget and sel.chosen.ms_per_frame == 6.0
    assert "score grid's map is built" in sel.reason
    table = format_table(sel.to_json())
    assert "6.0c" in table and "c: within the budget with the score grid's map only" in table
    cfg, sel = select_config(good_images, budget_ms=10.0, allow_over_budget=True, **kw)
    assert cfg.map_layers == "auto" and not sel.chosen.coarse_map and sel.chosen.ms_per_frame == 12.0
    cfg, sel = select_config(good_images, budget_ms=20.0, **kw)  # the sharper map fits: no change
    assert cfg.map_layers == "auto" and not any(s.coarse_map for s in sel.scored)
    with pytest.raises(BudgetError):  # over even with the coarse map
        select_config(good_images, budget_ms=5.0, **kw)


def test_an_over_budget_default_is_named_with_the_budget_that_keeps_it(good_images, monkeypatch) -> None:
    import inspector.candidate_scoring as cs

    def cost(model, probe, repeats=3):  # type: ignore[no-untyped-def]
        return 40.0 if tuple(model.config.layers) == FAST["layer_sets"][0][0] else 6.0

    monkeypatch.setattr(cs, "measure_ms", cost)
    kw = {"base": BASE, "pinned": {"input_size": 64}, "n_fit": 8, "n_eval": 4, **FAST}
    _, sel = select_config(good_images, budget_ms=33.0, **kw)
    assert sel.chosen.candidate.layers == FAST["layer_sets"][1][0]
    assert "over budget (40.0 ms per frame; --budget-ms 48 or --allow-over-budget" in sel.reason


def test_a_cost_near_the_budget_is_measured_again_with_more_runs(monkeypatch) -> None:
    import inspector.candidate_scoring as cs

    calls: list[int] = []
    first = {"ms": 0.0}  # what the first, short measurement reads

    def cost(model, probe, repeats=3):  # type: ignore[no-untyped-def]
        calls.append(repeats)
        return first["ms"] if repeats == 3 else first["ms"] - 8.0

    monkeypatch.setattr(cs, "measure_ms", cost)
    model, probe = object(), object()
    for ms, want, runs in ((40.0, 32.0, [3, cs.NEAR_BUDGET_REPEATS]), (100.0, 100.0, [3]), (9.0, 9.0, [3])):
        first["ms"] = ms
        calls.clear()
        assert cs.measure_near(model, probe, 33.0) == want and calls == runs  # far over or under: once


def test_within_tolerance_the_incumbent_yields_only_to_a_clearly_cheaper_candidate() -> None:
    """Costs move between runs; a tie on cost must not flip the choice from one run to the next."""
    default, rival = _scored(0, 0.950, 13.5), _scored(1, 0.952, 13.4)
    rival.gain_low = 0.001  # beyond chance, but within the tolerance of the default
    assert pick([default, rival], allow_over=False, tolerance=0.01, incumbent=default) is default
    assert pick([default, rival], allow_over=False, tolerance=0.0, incumbent=default) is rival  # better: it wins
    rival.ms_per_frame = 9.0  # clearly cheaper: it serves the line better
    assert pick([default, rival], allow_over=False, tolerance=0.01, incumbent=default) is rival
    assert pick([default, _scored(2, 0.952, 13.4)], allow_over=False, tolerance=0.01) is not default  # no incumbent


def _bank_cost(per_row_ms: float, fixed_ms: float = 4.0):  # type: ignore[no-untyped-def]
    """A measure whose cost grows with the memory bank's rows, as the nearest-neighbour search's does."""

    def cost(model, probe, repeats=3):  # type: ignore[no-untyped-def]
        return fixed_ms + per_row_ms * model.memory_bank.shape[0]

    return cost


def test_a_bank_too_large_for_the_budget_is_cut_before_the_settings_change(good_images, monkeypatch) -> None:
    """Many training images make the bank, and so the cost, grow; a smaller coreset keeps the
    settings (the score barely moves with it) where the search used to fall back to others."""
    import inspector.candidate_scoring as cs

    monkeypatch.setattr(cs, "measure_ms", _bank_cost(0.01))
    fitted_ratios: list[float] = []
    real_use = cs._Group.use

    def use(self, cand, base):  # type: ignore[no-untyped-def]
        fitted_ratios.append(cand.coreset_ratio)
        return real_use(self, cand, base)

    monkeypatch.setattr(cs._Group, "use", use)
    coarse = PatchCoreConfig(pretrained=False, input_size=64, map_layers=None)
    kw = {"base": coarse, "pinned": {"input_size": 64}, "n_fit": 8, "n_eval": 4, **FAST}
    # 64 px, stride 8: 64 cells per image; 0.25 x 400 x 64 = 6,400 rows take 68 ms
    cfg, sel = select_config(good_images, budget_ms=20.0, n_final=400, **kw)
    assert sel.chosen.candidate.layers == FAST["layer_sets"][0][0]  # the incumbent's settings stay
    assert sel.chosen.within_budget and sel.chosen.uncut_ms == 68.0
    assert sel.chosen.bank_rows == 1600 and sel.chosen.ms_per_frame == 20.0  # halved twice: 6,400 -> 1,600
    assert cfg.coreset_ratio == pytest.approx(0.0625) and sel.chosen.cut_coreset_ratio == pytest.approx(0.0625)
    assert "the memory bank is cut to 1,600 rows (coreset ratio 0.0625" in sel.reason
    # The search scores a cut candidate with its own bank cut alike, so the criterion carries the loss.
    assert fitted_ratios and all(r == pytest.approx(0.0625) for r in fitted_ratios)
    table = format_table(sel.to_json())
    assert "20.0r" in table and "r: within the budget with a smaller memory bank" in table
    # Never below 1% of the final model's patches (0.01 x 400 x 64 = 256 rows: 6.6 ms).
    with pytest.raises(BudgetError):
        select_config(good_images, budget_ms=5.0, n_final=400, **kw)
    # A pinned coreset ratio is the engineer's: no cut.
    pinned = {**kw, "pinned": {"input_size": 64, "coreset_ratio": 0.25}}
    with pytest.raises(BudgetError):
        select_config(good_images, budget_ms=20.0, n_final=400, **pinned)
    # Allowed over the budget: the full bank.
    cfg, sel = select_config(good_images, budget_ms=20.0, n_final=400, allow_over_budget=True, **kw)
    assert cfg.coreset_ratio == 0.25 and sel.chosen.cut_coreset_ratio is None and sel.chosen.ms_per_frame == 68.0


def test_the_coarse_map_is_tried_before_the_bank_is_cut(good_images, monkeypatch) -> None:
    import inspector.candidate_scoring as cs

    bank = _bank_cost(0.01)

    def cost(model, probe, repeats=3):  # type: ignore[no-untyped-def]
        return bank(model, probe) + (10.0 if model.fine_map is not None and model.fine_map.is_fitted else 0.0)

    monkeypatch.setattr(cs, "measure_ms", cost)
    sharp = PatchCoreConfig(pretrained=False, input_size=64)
    kw = {"base": sharp, "pinned": {"input_size": 64}, "n_fit": 8, "n_eval": 4, **FAST}
    # 1,600 rows: 20 ms, 30 ms with the sharper map; a 25 ms budget takes the coarse map, full bank
    cfg, sel = select_config(good_images, budget_ms=25.0, n_final=100, **kw)
    assert sel.chosen.coarse_map and sel.chosen.cut_coreset_ratio is None and cfg.map_layers is None
    # 15 ms: the coarse map alone is not enough; 800 rows with the sharper map take 22 ms, with
    # the coarse map 12 ms
    cfg, sel = select_config(good_images, budget_ms=15.0, n_final=100, **kw)
    assert sel.chosen.bank_rows == 800 and sel.chosen.coarse_map and sel.chosen.ms_per_frame == 12.0
    assert cfg.coreset_ratio == pytest.approx(0.125) and cfg.map_layers is None


def test_the_bank_is_not_cut_further_when_halving_it_hardly_helps(good_images, monkeypatch) -> None:
    """Where the backbone makes a candidate slow, cutting its bank costs search time and accuracy for nothing."""
    import inspector.candidate_scoring as cs

    banks: list[int] = []

    def cost(model, probe, repeats=3):  # type: ignore[no-untyped-def]
        banks.append(int(model.memory_bank.shape[0]))
        return 40.0 + 0.0001 * model.memory_bank.shape[0]

    monkeypatch.setattr(cs, "measure_ms", cost)
    coarse = PatchCoreConfig(pretrained=False, input_size=64, map_layers=None)
    kw = {"base": coarse, "pinned": {"input_size": 64}, "n_fit": 8, "n_eval": 4, **FAST}
    with pytest.raises(BudgetError):
        select_config(good_images, budget_ms=20.0, n_final=400, **kw)
    # 6,400 rows, then 3,200 (40.3 ms, hardly less): no 1,600 or below for either stage set
    assert set(banks) == {6400, 3200}


def test_a_tiny_positive_bound_does_not_read_as_zero() -> None:
    """Only the bound's sign decides; +0.0000 for a bound above zero read as 'not beyond chance'."""
    from inspector.autoconfig import signed

    assert signed(0.0000123) == "+1.2e-05" and signed(-3e-6) == "-3.0e-06"
    assert signed(0.0247) == "+0.0247" and signed(0.0) == "+0.0000"


def test_the_search_progress_ends_full(good_images) -> None:
    """The greedy stages learn their total as they go; the last report must say the search is done."""
    calls: list[tuple[str, int, int]] = []
    _, sel = select_config(
        good_images,
        base=BASE,
        pinned={"input_size": 64},
        n_fit=8,
        n_eval=4,
        progress=lambda stage, done, total: calls.append((stage, done, total)),
        **FAST,
    )
    search = [(d, t) for s, d, t in calls if s == "settings search"]
    assert search and search[-1] == (len(sel.scored), len(sel.scored))
    assert all(d <= t for d, t in search)
