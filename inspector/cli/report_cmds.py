"""``inspector explain-report``: every explanation method measured and judged on one model (PDF + JSON)."""

from __future__ import annotations

from pathlib import Path

import click

from inspector.cli.common import device_option, root_option


@click.command("explain-report")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True)
@click.option("--manifest", type=click.Path(path_type=Path), required=True)
@root_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default: the model directory.")
@click.option("--limit", type=click.IntRange(1), default=4, show_default=True, help="Test images per class.")
@click.option("--samples", type=click.IntRange(8), default=64, show_default=True, help="LIME/KernelSHAP samples.")
@click.option("--checks", type=click.IntRange(1), help="Sanity and stability on at most this many defective images.")
@click.option("--method", "raw_methods", multiple=True, help="Only these methods (default: every registered one).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-record", is_flag=True, help="Do not record the report's hash in the model's model.json.")
@device_option
def explain_report_cmd(
    model_dir: Path,
    manifest: Path,
    root: Path,
    out: Path | None,
    limit: int,
    samples: int,
    checks: int | None,
    raw_methods: tuple[str, ...],
    seed: int,
    no_record: bool,
    device: str,
) -> None:
    """Measure every explanation method on one model and judge it: adds value, decoration or misleading.

    Localisation, faithfulness, sanity, stability, agreement and cost per method, a verdict by
    stated rules, and the decision-boundary view; the report's sha256 goes into model.json so the
    audit record of the model carries it.

    Example: inspector explain-report --model models_out/pill --manifest data_manifests/pillqc.json
    --root ../shared/data/pillqc --out report
    """
    from inspector.explain import check_methods
    from inspector.explain_report import build_report

    names = [m.strip() for r in raw_methods for m in r.split(",") if m.strip()]
    methods = check_methods(names) if names else None
    r = build_report(
        model_dir,
        manifest,
        root,
        out or model_dir,
        limit=limit,
        samples=samples,
        max_checks=checks,
        seed=seed,
        methods=methods,
        device=device,
        record=not no_record,
        progress=click.echo,
    )
    for m in r.doc["methods"]:
        auroc = "-" if m["pixel_auroc"] is None else f"{m['pixel_auroc']:.3f}"
        sanity = "-" if m["sanity_backbone"] is None else f"{m['sanity_backbone']:.2f}"
        ms = "-" if m["ms"] is None else f"{m['ms']:.0f}"
        click.echo(f"{m['name']:20s} {m['verdict']:16s} pixel AUROC {auroc:>5s}  sanity {sanity:>5s}  {ms:>5s} ms")
    click.echo(f"wrote {r.pdf_path} and {r.json_path} (sha256 {r.sha256[:16]}...)")
