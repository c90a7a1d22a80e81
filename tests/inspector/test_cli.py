"""The CLI contract: names, outputs, and one-line errors with non-zero exits."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from inspector.cli import main

EVAL_KEYS = {
    "image_auroc",
    "per_defect",
    "pixel_auroc",
    "aupro",
    "gradcam_pixel_auroc",
    "masked_defects",
    "unmasked_defects",
    "f1_max",
    "threshold",
    "false_reject_rate",
    "miss_rate",
    "n_normal",
    "n_anomalous",
    # issue 11: the stated false-reject rate, the REVIEW band's outcome, out-of-domain frames, warnings
    "stated_frr",
    "escape_rate",
    "review_rate_good",
    "review_rate_defect",
    "out_of_domain",
    "warnings",
}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_every_command_has_help_text() -> None:
    def walk(group, prefix=()):
        for name, cmd in group.commands.items():
            yield prefix + (name,), cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, prefix + (name,))

    for path, cmd in walk(main):
        assert cmd.help, f"inspector {' '.join(path)} has no help"
        code, out = run(*path, "--help")
        assert code == 0 and "Usage" in out


def test_manifest_train_eval_predict(synthetic_pills, tmp_path: Path) -> None:
    root, _, _ = synthetic_pills
    man = tmp_path / "m.json"
    code, out = run(
        "data",
        "manifest",
        str(root / "pill"),
        "--layout",
        "folders",
        "--normal",
        "good",
        "--train-count",
        "12",
        "-o",
        str(man),
    )
    assert code == 0, out
    assert run("data", "verify", str(man), "--root", str(root / "pill"))[0] == 0
    model = tmp_path / "model"
    code, out = run(
        "train",
        "--manifest",
        str(man),
        "--root",
        str(root / "pill"),
        "--out",
        str(model),
        "--input-size",
        "64",
        "--coreset-ratio",
        "0.2",
        "--no-search",
        "--device",
        "cpu",
    )
    assert code == 0, out
    assert "threshold" in out
    assert "anomaly map: mean of the score's grid" in out  # the default map, said where it is trained
    report = tmp_path / "eval.json"
    code, out = run(
        "eval", "--model", str(model), "--manifest", str(man), "--root", str(root / "pill"), "--json", str(report)
    )
    assert code == 0, out
    doc = json.loads(report.read_text())
    assert set(doc) == EVAL_KEYS
    assert doc["n_normal"] == 10 and doc["n_anomalous"] == 8 and set(doc["per_defect"]) == {"chip", "dirt"}
    assert doc["pixel_auroc"] is None and doc["gradcam_pixel_auroc"] is None  # the folders manifest has no masks
    assert doc["masked_defects"] == 0 and doc["unmasked_defects"] == 8
    code, printed = run("eval", "--model", str(model), "--manifest", str(man), "--root", str(root / "pill"))
    assert code == 0, printed  # --json is optional: the figures are printed either way
    assert f"image AUROC           {doc['image_auroc']:.4f}" in printed
    img = next((root / "pill" / "chip").iterdir())
    code, out = run("predict", "--model", str(model), "--out", str(tmp_path / "pred"), str(img))
    assert code == 0, out
    pred = json.loads((tmp_path / "pred" / f"{img.stem}.json").read_text())
    assert {"score", "threshold", "verdict"} <= set(pred) and pred["verdict"] in {"OK", "REVIEW", "DEFECT"}
    assert (tmp_path / "pred" / f"{img.stem}.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (("data", "verify", "{tmp}/none.json", "--root", "{tmp}"), "manifest not found"),
        (
            (
                "eval",
                "--model",
                "{tmp}/nomodel",
                "--manifest",
                "{tmp}/m.json",
                "--root",
                "{tmp}",
                "--json",
                "{tmp}/o.json",
            ),
            "model directory not found",
        ),
        (("predict", "--model", "{model}", "--out", "{tmp}/o", "{tmp}/notes.png"), "not an image file"),
        (("predict", "--model", "{model}", "--out", "{tmp}/o", "{tmp}/absent.png"), "file not found"),
        (("train", "--manifest", "{tmp}/abs.json", "--root", "{tmp}", "--out", "{tmp}/x"), "absolute path"),
        (
            ("train", "--manifest", "{tmp}/abs.json", "--root", "{tmp}", "--out", "{tmp}/x", "--device", "cuda"),
            "absolute path|no CUDA",
        ),
    ],
)
def test_bad_input_gives_one_line_and_non_zero_exit(args, message, tmp_path: Path, trained_tiny) -> None:
    (tmp_path / "notes.png").write_text("hello")
    (tmp_path / "abs.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "name": "x",
                "items": [{"path": "/etc/passwd", "label": "normal", "split": "train", "sha256": "0" * 64}],
            }
        )
    )
    filled = [a.format(tmp=tmp_path, model=trained_tiny) for a in args]
    code, out = run(*filled)
    assert code != 0
    assert "Traceback" not in out
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, out
    import re

    assert re.search(message, lines[0]), lines[0]


def test_checksum_mismatch_stops_training(synthetic_pills, tmp_path: Path) -> None:
    root, manifest, _ = synthetic_pills
    doc = manifest.to_json()
    doc["items"][0]["sha256"] = "f" * 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, out = run(
        "train", "--manifest", str(bad), "--root", str(root), "--out", str(tmp_path / "m"), "--input-size", "64"
    )
    assert code != 0 and "checksum mismatch" in out


def test_train_names_the_input_it_takes_from_elongated_frames_and_its_cost(tmp_path: Path) -> None:
    """Without pinned sizes, elongated frames keep their aspect; ``train`` says so and what it costs."""
    import cv2
    import numpy as np

    from inspector.manifest import build_manifest

    root = tmp_path / "long"
    (root / "good").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):  # 100 wide, 250 tall: a commutator-like strip
        img = (120 + 20 * rng.standard_normal((250, 100, 3))).clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "good" / f"g{i}.png"), img)
    man = tmp_path / "long.json"
    build_manifest(root, layout="folders", normal="good", train_count=6).save(man)
    code, out = run(
        "train", "--manifest", str(man), "--root", str(root), "--out", str(tmp_path / "m"),
        "--coreset-ratio", "0.2", "--no-search", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, out
    assert "input 112x280 px (width x height)" in out and "2.5x the pixels of 112x112" in out
