"""The explanation registry, the verdict rules, the decision boundary, pasted defects, the report."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from inspector import explainers
from inspector.cli import main
from inspector.decision_boundary import decision_boundary
from inspector.explain import Explainer, UnknownMethodError, check_methods
from inspector.explain_checks import MethodFigures
from inspector.explain_verdict import ADDS_VALUE, DECORATION, MISLEADING, judge
from inspector.images import read_image
from inspector.paste_defects import paste_defect
from inspector.pipeline import Inspector


def test_registry_holds_every_method_once_with_fast_ones_for_every_frame() -> None:
    names = explainers.names()
    expected = {"anomaly", "gradcam", "saliency", "occlusion", "lime", "kernelshap", "gradientshap", "deeptaylor"}
    assert expected <= set(names)
    assert {"defect-cam", "defect-gradcam", "defect-lime", "defect-kernelshap", "defect-deeptaylor"} <= set(names)
    assert len(names) == len(set(names))
    assert set(explainers.fast_names()) == {"anomaly", "gradcam", "saliency"}
    assert explainers.every_frame_method() == "gradcam"
    assert all(explainers.get(n).target == "defect" for n in names if n.startswith("defect-"))
    with pytest.raises(KeyError, match="choose from"):
        explainers.get("nope")


def test_a_new_method_file_registers_itself_and_the_cli_and_explainer_pick_it_up(
    trained_tiny: Path, synthetic_pills, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a new file in inspector/explainers does, done here without writing into the package.
    module = types.ModuleType("inspector.explainers.test_corner")

    def corner(ctx: explainers.MethodContext) -> torch.Tensor:
        m = torch.zeros(ctx.side, ctx.side)
        m[:4, :4] = 1.0
        return m

    spec = explainers.Method("test-corner", "top-left corner", corner, cost="nothing")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(explainers._REGISTRY, spec.name, explainers.register(spec))
    assert "test-corner" in check_methods(["test-corner"])
    listed = CliRunner().invoke(main, ["explain-methods"])
    assert listed.exit_code == 0 and "test-corner" in listed.output and "top-left corner" in listed.output
    root, _, _ = synthetic_pills
    frame = read_image(sorted((root / "pill" / "chip").glob("*.png"))[0])
    e = Explainer.load(Inspector.load(trained_tiny, "cpu")).explain(frame, ("anomaly", "test-corner"))
    assert e.maps["test-corner"].shape == frame.shape[:2] and "test-corner" in e.ms
    assert e.maps["test-corner"][0, 0] == 1.0 and e.maps["test-corner"][-1, -1] == 0.0
    with pytest.raises(ValueError, match="registered twice"):
        explainers.register(explainers.Method("test-corner", "other", corner))


def test_unknown_method_names_the_known_ones() -> None:
    with pytest.raises(UnknownMethodError, match="deeptaylor"):
        check_methods(["anomaly", "shap-of-the-moon"])


def test_every_method_gives_a_frame_sized_nonnegative_map_with_its_cost(with_head: Path, synthetic_pills) -> None:
    root, _, _ = synthetic_pills
    frame = read_image(sorted((root / "pill" / "dirt").glob("*.png"))[0])
    good = read_image(sorted((root / "pill" / "good").glob("*.png"))[0])
    ex = Explainer.load(Inspector.load(with_head, "cpu"), reference=[good])
    methods = explainers.names()
    e = ex.explain(frame, methods, {"samples": 16, "gradient_samples": 2})
    assert set(e.maps) == set(methods)
    for name, m in e.maps.items():
        assert m.shape == frame.shape[:2] and np.isfinite(m).all(), name
        assert name in e.ms and e.ms[name] >= 0, name
        if name != "anomaly":
            assert m.min() >= 0 and m.max() <= 1.0 + 1e-6, name


def figures(**kw) -> MethodFigures:
    base = dict(
        pixel_auroc=0.95,
        deletion=0.7,
        deletion_random=1.0,
        deletion_shifted=0.9,
        sanity_backbone=0.1,
        stability_shift=0.8,
        stability_jpeg=0.9,
    )
    base.update(kw)
    return MethodFigures("m", "m", "score", False, **base)


@pytest.mark.parametrize(
    ("changes", "verdict", "reason"),
    [
        ({}, ADDS_VALUE, "passes every checked rule"),
        ({"sanity_backbone": 0.6}, MISLEADING, "fails sanity"),
        ({"sanity_labels": 0.7}, MISLEADING, "shuffled labels"),
        ({"pixel_auroc": 0.7}, MISLEADING, "centred blob"),
        ({"deletion": 1.05}, MISLEADING, "unfaithful"),
        ({"pixel_auroc": 0.85}, DECORATION, "pixel AUROC"),
        ({"deletion": 0.95}, DECORATION, "shifted map"),
        ({"stability_jpeg": 0.3}, DECORATION, "JPEG"),
        ({"pixel_auroc": None}, ADDS_VALUE, "not checked: localisation"),
    ],
)
def test_verdict_rules(changes: dict, verdict: str, reason: str) -> None:
    got, reasons = judge(figures(**changes), blob_auroc=0.8)
    assert got == verdict
    assert any(reason in r for r in reasons), reasons


def test_decision_boundary_separates_clusters_and_finds_a_defect_inside_the_good_one() -> None:
    rng = np.random.default_rng(0)
    good = rng.normal(0, 1, (20, 6))
    bad = rng.normal(0, 1, (8, 6)) + np.array([8, 8, 0, 0, 0, 0])
    inside = rng.normal(0, 0.1, (1, 6))  # a defect that looks like a good part
    feats = np.vstack([good, bad, inside])
    scores = np.r_[np.full(20, 1.0), np.full(8, 5.0), 1.2]
    labels = ["good"] * 20 + ["chip"] * 8 + ["dirt"]
    v = decision_boundary(feats, scores, labels, threshold=3.0)
    assert v.points.shape == (29, 2) and v.grid_score.shape == (len(v.grid_y), len(v.grid_x))
    assert v.near_good == [28]

    # The interpolated score is above threshold around the far cluster and below around the good one.
    def at(p: np.ndarray) -> float:
        return float(v.grid_score[np.abs(v.grid_y - p[1]).argmin(), np.abs(v.grid_x - p[0]).argmin()])

    assert at(v.points[20:28].mean(0)) >= 3.0 > at(v.points[:20].mean(0))
    with pytest.raises(ValueError, match="N >= 3"):
        decision_boundary(feats[:2], scores[:2], labels[:2], 3.0)


def test_pasted_defect_changes_only_its_masked_area() -> None:
    img = np.full((112, 112, 3), 40, np.uint8)
    img[25:90, 20:95] = 220  # a bright part on a dark ground
    for seed in range(6):
        out, mask = paste_defect(img, np.random.default_rng(seed))
        assert mask.any() and mask.mean() < 0.1
        assert (img[mask] > 200).all(), "the defect must land on the part"
        changed = np.abs(out.astype(int) - img.astype(int)).max(axis=2) > 10
        ring = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        ring[max(ys.min() - 3, 0) : ys.max() + 4, max(xs.min() - 3, 0) : xs.max() + 4] = True
        assert changed[mask].mean() > 0.9 and not (changed & ~ring).any()


def test_explain_report_writes_pdf_and_json_and_records_its_hash(with_head: Path, synthetic_pills, tmp_path) -> None:
    import shutil

    root, _, manifest_path = synthetic_pills
    model = Path(shutil.copytree(with_head, tmp_path / "model"))
    out = tmp_path / "report"
    res = CliRunner().invoke(
        main,
        [
            "explain-report",
            "--model",
            str(model),
            "--manifest",
            str(manifest_path),
            "--root",
            str(root),
            "--out",
            str(out),
            "--limit",
            "1",
            "--samples",
            "8",
            "--method",
            "anomaly,gradcam,lime,defect-cam",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "explain_report.json").read_text())
    assert [m["name"] for m in doc["methods"]] == ["anomaly", "gradcam", "lime", "defect-cam"]
    for m in doc["methods"]:
        assert m["verdict"] in (ADDS_VALUE, DECORATION, MISLEADING) and m["reasons"]
        assert m["pixel_auroc"] is not None and m["sanity_backbone"] is not None  # synthetic pills have masks
    assert doc["methods"][3]["sanity_labels"] is not None  # the defect head was refitted on shuffled labels
    assert (out / "explain_report.pdf").read_bytes().startswith(b"%PDF")
    recorded = Inspector.load(model, "cpu").info.metrics["explain_report"]  # what registration records
    assert recorded["json_sha256"] == hashlib.sha256((out / "explain_report.json").read_bytes()).hexdigest()
    assert recorded["shown_on_every_frame"] == "gradcam" and set(recorded["verdicts"]) == {
        "anomaly",
        "gradcam",
        "lime",
        "defect-cam",
    }


@pytest.fixture(scope="module")
def with_head(trained_tiny: Path, synthetic_pills, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    from inspector.explain import train_defect_head

    root, manifest, _ = synthetic_pills
    d = Path(shutil.copytree(trained_tiny, tmp_path_factory.mktemp("head") / "model"))
    train_defect_head(d, manifest, root, share=0.5)
    return d


def test_auditor_caption_says_which_explanation_was_shown_and_how_it_was_judged() -> None:
    from inspector.app_logic.auditor import explanation_note

    rec = {"explain_report": {"shown_on_every_frame": "gradcam", "verdicts": {"gradcam": "decoration"}}}
    rec["explain_report"]["json_sha256"] = "ab" * 32
    expected = " - explanation shown: gradcam, judged 'decoration' (explanation report abababababab)"
    assert explanation_note(rec) == expected
    assert "not judged" in explanation_note({})
