"""``inspector bench`` and ``inspector export``: speed against the reference, and ONNX models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from inspector.cli.common import device_option, prediction_doc, root_option, write_json
from inspector.errors import ConfigError
from inspector.manifest import load_manifest


def format_table(report: dict[str, Any]) -> str:
    """The report as a terminal table, with the targets of issue 7 beside the ratios."""

    def num(v: Any, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    side = report["side_by_side"]
    head = (
        f"{report['dataset']}: {report['n_train']} train / {report['n_test']} test images, "
        f"coreset {report['coreset_ratio']}, {report['device_name']}, {report['threads']} threads, "
        f"torch {report['torch']}"
    )
    cols = (
        f"{'':<34}{'fit s':>9}{'ms b1':>9}{'ms b8':>9}{'fps b1':>9}{'fps b8':>9}{'AUROC':>9}{'bank MB':>9}{'RSS MB':>9}"
    )
    lines = [head, cols]

    def row(label: str, e: dict[str, Any] | None) -> None:
        if e is None:
            lines.append(f"{label:<34}{'(not run)':>9}")
            return
        fit = num(e["fit_s"], ".1f") + ("~" if e.get("fit_estimated") else "")
        rss = max(e.get("peak_rss_fit_mb", 0.0), e.get("peak_rss_infer_mb", 0.0))
        lines.append(
            f"{label:<34}{fit:>9}{num(e['ms_b1'], '.1f'):>9}{num(e['ms_b8'], '.1f'):>9}"
            f"{num(e['fps_b1'], '.1f'):>9}{num(e['fps_b8'], '.1f'):>9}{num(e['image_auroc'], '.4f'):>9}"
            f"{num(e['bank_mb'], '.1f'):>9}{rss:>9.0f}"
        )

    setting = f"{'+'.join(side['layers'])} @{side['input_size']}"
    row(f"inspector  {setting}", report["ours"])
    row(f"anomalib   {setting}", report["anomalib"])
    d = report.get("ours_default")
    if d is not None:
        c = d["config"]
        row(f"inspector  {'+'.join(c['layers'])} @{c['input_size']} (default)", d)
    floors = (("backbone alone (ours, folded)", "backbone"), ("backbone alone (as timm ships)", "backbone_plain"))
    for label, key in floors:
        b1, b8 = report[f"{key}_ms_b1"], report[f"{key}_ms_b8"]
        lines.append(f"{label:<34}{'':>9}{b1:>9.1f}{b8:>9.1f}{1000 / b1:>9.1f}{1000 / b8:>9.1f}")
    r = report["ratios"]
    lines.append(
        f"fit speedup {num(r['fit_speedup'], '.1f')}x (target >= 10) | inference speedup b1 "
        f"{num(r['infer_speedup_b1'], '.2f')}x (>= 2), b8 {num(r['infer_speedup_b8'], '.2f')}x | "
        f"floor ratio b1 {num(r['floor_ratio_b1'], '.2f')} (<= 1.3; "
        f"{num(r['plain_floor_ratio_b1'], '.2f')} over the backbone as timm ships it) | "
        f"AUROC delta {num(r['auroc_delta'], '+.4f')} (|d| <= 0.005)"
    )
    ref = report["anomalib"]
    if ref is None:
        lines.append("anomalib reference not run (--no-reference, or not installed)")
    elif ref.get("fit_estimated"):
        lines.append(
            f"~ anomalib's fit is estimated from its measured coreset rate ({ref['coreset_steps_per_s']} steps/s); "
            f"its bank for inference and AUROC came from {ref['bank_source']}"
        )
    return "\n".join(lines)


@click.command("bench")
@click.option("--manifest", type=click.Path(path_type=Path), required=True)
@root_option
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@device_option
@click.option("--coreset-ratio", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True)
@click.option(
    "--reference/--no-reference",
    default=True,
    show_default=True,
    help="Run anomalib's PatchcoreModel beside ours (needs: pip install 'inspector[bench]').",
)
@click.option(
    "--reference-budget",
    type=click.FloatRange(min=0),
    default=1500.0,
    show_default=True,
    help="Seconds anomalib's coreset may take; beyond, its time is estimated from its measured rate.",
)
@click.option(
    "--ours-default/--no-ours-default",
    default=True,
    show_default=True,
    help="Also fit and time ours at its own default settings (a line of its own).",
)
@click.option("--repeats", type=click.IntRange(min=1), default=7, show_default=True, help="Timing rounds (median).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch (default: torch's choice). On a busy machine 1 can be much faster at batch 1.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def bench_cmd(
    manifest: Path,
    root: Path,
    json_out: Path,
    device: str,
    coreset_ratio: float,
    reference: bool,
    reference_budget: float,
    ours_default: bool,
    repeats: int,
    threads: int | None,
    seed: int,
) -> None:
    """Fit and time inspector's PatchCore and anomalib's side by side; print a table, write JSON.

    Same backbone weights, images, coreset ratio and settings (efficientnet-lite0 blocks.2 +
    blocks.4 at 224 px) for both; our default settings get a line of their own. Frames per
    second at batch 1 and 8 tell whether this PC keeps up with a line.

    Example: inspector bench --manifest data_manifests/pillqc.json --root ../shared/data/pillqc --json bench.json
    """
    from inspector.bench_reference import INSTALL_HINT, anomalib_available
    from inspector.benchmark import run_benchmark

    if reference and not anomalib_available():
        raise ConfigError(
            f"anomalib (the reference) is not installed: {INSTALL_HINT}; or run with --no-reference for ours alone"
        )
    if threads:
        import torch

        torch.set_num_threads(threads)
    m = load_manifest(manifest)
    report = run_benchmark(
        m,
        root,
        device=device,
        coreset_ratio=coreset_ratio,
        reference=reference,
        seed=seed,
        repeats=repeats,
        reference_budget_s=reference_budget,
        ours_default=ours_default,
        echo=lambda msg: click.echo(msg, err=True),
    )
    write_json(json_out, report)
    click.echo(format_table(report))


@click.command("export")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True)
@click.option("--onnx", "onnx_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True)
def export_cmd(model_dir: Path, onnx_file: Path, opset: int) -> None:
    """Export a trained model to ONNX: images in [0, 1] at the input size -> (score, anomaly_map).

    The thresholds and model provenance travel in the file's metadata, so
    ``inspector predict --onnx FILE`` needs nothing else.

    Example: inspector export --model models_out/pill --onnx pill.onnx
    """
    from inspector.onnx_export import export_model_dir

    info = export_model_dir(model_dir, onnx_file, opset=opset)
    click.echo(f"exported {onnx_file} ({info['size_mb']:.1f} MB, input {info['input_shape']}, opset {opset})")


def register(main: click.Group) -> None:
    main.add_command(bench_cmd)
    main.add_command(export_cmd)


def predict_onnx(onnx_file: Path, out: Path, images: tuple[Path, ...]) -> None:
    """``inspector predict --onnx``: the same JSON and overlay as ``--model``, through ONNX Runtime."""
    import cv2

    from inspector.images import read_image
    from inspector.onnx_export import OnnxInspector
    from inspector.overlay import panels

    inspector = OnnxInspector(onnx_file)
    frames = [(p, read_image(p)) for p in images]  # read all first: a bad file fails before any output
    out.mkdir(parents=True, exist_ok=True)
    t = inspector.thresholds
    for path, frame in frames:
        r = inspector.inspect_images([frame], sources=[str(path)])[0]
        doc = prediction_doc(path, r, inspector.info.weights_sha256, runtime="onnxruntime")
        write_json(out / f"{path.stem}.json", doc)
        png = panels(
            frame,
            [("anomaly map", r.anomaly_map, t.map_low, t.map_high, t.decision)],
            header=f"{r.verdict}  score {r.score:.3f} / thr {r.threshold:.3f}",
        )
        cv2.imwrite(str(out / f"{path.stem}.png"), cv2.cvtColor(png, cv2.COLOR_RGB2BGR))
        click.echo(f"{path}: {r.verdict} (score {r.score:.4f}, threshold {r.threshold:.4f})")
