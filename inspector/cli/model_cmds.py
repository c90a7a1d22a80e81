"""``inspector train | eval | predict | demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from inspector.cli.common import StageBars, device_option, prediction_doc, root_option, show_progress, write_json
from inspector.errors import ImageError, InspectorError
from inspector.manifest import load_manifest


class BackboneChoice(click.Choice):  # type: ignore[type-arg]
    """``--backbone`` names, read from ``models.backbones`` (which loads torch) only when a command parses."""

    def __init__(self) -> None:
        super().__init__((), case_sensitive=True)

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from models.backbones import BACKBONES

        return tuple(sorted(BACKBONES))

    @choices.setter
    def choices(self, _value: Any) -> None:
        """click's constructor sets them; the property reads them instead."""


@click.command("train")
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="Required unless --update.")
@root_option
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Model directory to write."
)
@click.option(
    "--backbone",
    type=BackboneChoice(),
    default=None,
    help="Pin the backbone (default: chosen by the settings search among efficientnet_lite0/1/2).",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="Local weights file (needed for resnet18 / wide_resnet50_2; never downloaded).",
)
@click.option("--layers", default=None, help="Pin the backbone stages, comma-separated (default: searched).")
@click.option("--input-size", type=click.IntRange(min=32), default=None, help="Pin the input size (height) in pixels.")
@click.option(
    "--input-width", type=click.IntRange(min=32), default=None, help="Pin a different input width (keeps aspect)."
)
@click.option(
    "--keep-aspect/--squash-aspect",
    "keep_aspect",
    default=None,
    help="Pin whether each frame keeps its own aspect (same pixels as the input size) or is squashed to it "
    "(default: kept when the training frames are elongated in both orientations).",
)
@click.option(
    "--coreset-ratio",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Pin the share of patches kept in the memory bank (default: searched; 0.1 without search).",
)
@click.option(
    "--search/--no-search",
    default=True,
    show_default=True,
    help="Choose unpinned settings on the product's good images with synthetic defects; the defaults stay "
    "unless a candidate beats them beyond chance (x1.2 to x1.8 the training time on the real sets). "
    "--no-search: the fixed defaults (lite0, pixels+blocks.2+blocks.3, 112 px across, 10%), with "
    "elongated frames' aspect kept.",
)
@click.option(
    "--budget-ms",
    type=click.FloatRange(min=1),
    default=33.0,
    show_default=True,
    help="Per-frame time (inference + Grad-CAM) a searched candidate may take on this machine.",
)
@click.option("--allow-over-budget", is_flag=True, help="Let the search choose a candidate over --budget-ms.")
@click.option(
    "--fine-map/--coarse-map",
    default=True,
    show_default=True,
    help="The anomaly map: the score grid's map averaged with a finer one (every 4 px, a second small bank of "
    "stride-4 stages, searched under the frame's highest fifth of coarse scores), or --coarse-map: the score's "
    "grid alone (14x14 at 112 px). The score is the same either way (docs/measured.md, 'Sharper maps').",
)
@click.option(
    "--fine-score",
    type=click.Choice(["max", "sum", "fine"]),
    default=None,
    help="An image score that also reads a second bank of stride-4 stages (thin defects): max or mean of "
    "the two scores over their good-image scales, or the fine one alone. Opt-in: it lost image AUROC on "
    "pillQC's real defects (docs/measured.md, 'An image score at a finer scale').",
)
@click.option(
    "--target-frr",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.02,
    show_default=True,
    help="False-reject rate the threshold aims at (good-only calibration).",
)
@click.option(
    "--threshold-rule",
    type=click.Choice(["tail", "order"]),
    default="tail",
    show_default=True,
    help="Good-only threshold: an exponential fit to the good scores' upper tail, or their order statistic.",
)
@click.option(
    "--calibration",
    type=click.Choice(["leave-one-out", "holdout"]),
    default="leave-one-out",
    show_default=True,
    help="Good-only calibration: every good image scored without its own patches, or a 10% hold-out.",
)
@device_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--update",
    "update_from",
    type=click.Path(path_type=Path),
    default=None,
    metavar="FROM_MODEL",
    help="Incremental: start from this version's bank instead of a full refit (writes --out, a new version).",
)
@click.option("--add", "add_manifest", type=click.Path(path_type=Path), default=None, help="With --update: add these.")
@click.option("--remove", "remove_manifest", type=click.Path(path_type=Path), help="With --update: take out.")
def train_cmd(
    manifest: Path | None,
    root: Path,
    out: Path,
    backbone: str,
    weights: str | None,
    layers: str | None,
    input_size: int | None,
    coreset_ratio: float | None,
    target_frr: float,
    threshold_rule: str,
    device: str,
    seed: int,
    update_from: Path | None = None,
    add_manifest: Path | None = None,
    remove_manifest: Path | None = None,
    calibration: str = "leave-one-out",
    input_width: int | None = None,
    search: bool = True,
    budget_ms: float = 33.0,
    allow_over_budget: bool = False,
    fine_map: bool = True,
    fine_score: str | None = None,
    keep_aspect: bool | None = None,
) -> None:
    """Fit PatchCore on the manifest's good training images, calibrate the threshold, save.

    Unless every setting is pinned (or --no-search), the settings are first chosen on the good
    training images with synthetic defects: the defaults stay unless a candidate beats them
    beyond chance; the table of candidates is printed and kept in model.json.

    Example: inspector train --manifest data_manifests/pillqc.json --root ../shared/data/pillqc --out models_out/pill

    Incremental: inspector train --update models_out/pill --add good.json --root FRAMES --out models_out/pill-2
    """
    if update_from is not None or add_manifest is not None or remove_manifest is not None:
        from inspector.cli.feedback_cmds import run_update

        run_update(update_from, add_manifest, remove_manifest, root, out, device)
        return
    if manifest is None:
        raise click.UsageError("give --manifest (or --update FROM_MODEL with --add/--remove)")
    from inspector.autoconfig import SearchOptions, default_input, format_table
    from inspector.training import train
    from models.backbones import BACKBONES
    from models.patchcore import PatchCoreConfig

    m = load_manifest(manifest)
    defaults = PatchCoreConfig()
    chosen_backbone = backbone or defaults.backbone
    spec_layers = BACKBONES[chosen_backbone].default_layers if chosen_backbone != defaults.backbone else defaults.layers
    auto_size, auto_width = input_size, input_width
    auto_keep = bool(keep_aspect)
    if input_size is None and input_width is None:
        # Elongated frames keep their aspect (112 px across): squashing a 250x627 commutator to a
        # square cost ksdd 0.70 against 0.89 image AUROC (docs/measured.md, "Settings chosen per product").
        # The search starts from the same size by itself; this one serves when it does not run.
        auto_size, auto_width, rule_keep = default_input(m, root)
        auto_keep = rule_keep if keep_aspect is None else keep_aspect
        if auto_keep and not search:
            click.echo(
                "each frame keeps its own aspect (the training frames are elongated both ways), with the pixels of "
                f"{auto_width or auto_size or defaults.input_size}x{auto_size or defaults.input_size}; "
                "--squash-aspect squashes them instead"
            )
        if auto_size is not None and not search:
            area = auto_size * (auto_width or auto_size) / defaults.input_size**2
            click.echo(
                f"input {auto_width or auto_size}x{auto_size} px (width x height), from the training frames' "
                f"shapes: {area:.1f}x the pixels of {defaults.input_size}x{defaults.input_size}, so about that "
                f"much more time per frame; --input-size/--input-width pin another"
            )
    config = PatchCoreConfig(
        backbone=chosen_backbone,
        layers=tuple(layers.split(",")) if layers else spec_layers,
        input_size=auto_size or defaults.input_size,
        input_width=auto_width,
        keep_aspect=auto_keep,
        coreset_ratio=coreset_ratio or defaults.coreset_ratio,
        seed=seed,
        weights=weights,
        # The focused blend (the default), not the fine map alone, which lost on ksdd's real masks.
        **({} if fine_map else {"map_layers": None}),
        fine_score=fine_score,
    )
    pinned: dict[str, object] = {
        k: v
        for k, v in (
            ("backbone", backbone if backbone or not weights else chosen_backbone),
            ("layers", config.layers if layers else None),
            ("input_size", input_size),
            ("input_width", input_width),
            ("keep_aspect", keep_aspect),
            ("coreset_ratio", coreset_ratio),
        )
        if v is not None
    }
    # The search knows the efficientnet-lite family's stages; other backbones keep given settings.
    searchable = chosen_backbone.startswith("efficientnet_lite")
    all_pinned = {"backbone", "layers", "input_size", "coreset_ratio"} <= set(pinned)
    opts = None
    if search and searchable and not all_pinned:
        opts = SearchOptions(pinned=pinned, budget_ms=budget_ms, allow_over_budget=allow_over_budget)
    bars = StageBars(show_progress())
    try:
        result = train(
            m,
            root,
            out,
            config=config,
            device=device,
            target_frr=target_frr,
            threshold_rule=threshold_rule,
            progress=bars,
            calibration=calibration,
            search=opts,
        )
    finally:
        bars.close()
    if result.selection is not None:
        click.echo(format_table(result.selection.to_json()))
    click.echo(
        f"trained {out}: memory bank {result.memory_bank_shape[0]} x {result.memory_bank_shape[1]} "
        f"from {result.n_train} good images in {result.fit_seconds:.1f} s"
    )
    from inspector.frr import describe_calibration
    from inspector.map_settings import describe_map
    from models.patchcore.serialization import read_model_json

    doc = read_model_json(out)
    click.echo(describe_map(doc.get("config") or {}))
    for line in describe_calibration(doc.get("metadata", {})):
        click.echo(line)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)


@click.command("eval")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True)
@click.option("--manifest", type=click.Path(path_type=Path), required=True)
@root_option
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the figures (and any warnings) to this JSON file.",
)
@device_option
def eval_cmd(model_dir: Path, manifest: Path, root: Path, json_out: Path | None, device: str) -> None:
    """Evaluate a model on the manifest's test split; print the figures (and write them as JSON with --json).

    Example: inspector eval --model models_out/pill --manifest data_manifests/pillqc.json
    --root ../shared/data/pillqc --json eval.json
    """
    from inspector.domain import manifest_warnings
    from inspector.evaluation import evaluate, format_report
    from inspector.pipeline import Inspector
    from models.patchcore.serialization import read_model_json

    inspector = Inspector.load(model_dir, device)
    m = load_manifest(manifest)
    warnings = manifest_warnings(read_model_json(model_dir).get("metadata", {}), m, root)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    bars = StageBars(show_progress())
    try:
        ev = evaluate(inspector, m, root, progress=lambda a, b: bars("scoring", a, b))
    finally:
        bars.close()
    if json_out is not None:
        write_json(json_out, {**ev.report, "warnings": warnings})
    click.echo(format_report(ev.report))


@click.command("predict")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None, help="Model directory.")
@click.option(
    "--onnx",
    "onnx_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Instead of --model: a file from 'inspector export', run by ONNX Runtime (thresholds inside; no Grad-CAM).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@device_option
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
def predict_cmd(
    model_dir: Path | None, out: Path, device: str, images: tuple[Path, ...], onnx_file: Path | None = None
) -> None:
    """Score IMAGES; write a JSON (score, threshold, verdict) and a PNG (frame | anomaly map | Grad-CAM) each.

    Example: inspector predict --model models_out/pill --out predictions ../shared/data/pillqc/chip/*.jpg
    """
    if (model_dir is None) == (onnx_file is None):
        raise click.UsageError("give exactly one of --model MODEL_DIR or --onnx FILE")
    if onnx_file is not None:
        from inspector.cli.bench_cmds import predict_onnx

        predict_onnx(onnx_file, out, images)
        return
    assert model_dir is not None
    import cv2

    from inspector.cli.explain_cmds import header
    from inspector.domain import OUT_OF_DOMAIN_LABEL
    from inspector.explain import Explainer
    from inspector.images import read_image_with_format
    from inspector.overlay import method_panels
    from inspector.pipeline import Inspector

    inspector = Inspector.load(model_dir, device)
    explainer = Explainer.load(inspector)
    out.mkdir(parents=True, exist_ok=True)
    t = inspector.thresholds
    failed: list[str] = []
    for path in images:
        try:  # one bad file is reported and skipped; the rest are still scored
            frame, fmt = read_image_with_format(path)  # the format is kept for the domain check
        except ImageError as exc:
            click.echo(f"skipped {exc}", err=True)
            failed.append(str(exc))  # the message names the file and why
            continue
        r = inspector.inspect_images([frame], sources=[str(path)], formats=[fmt])[0]
        e = explainer.explain(frame, ("anomaly", "gradcam"))
        doc = prediction_doc(
            path,
            r,
            inspector.info.weights_sha256,
            defect_type=e.defect_type,
            defect_probability=e.defect_probability,
            agreement=e.agreement,
            explain_ms={k: round(v, 2) for k, v in e.ms.items()},
            out_of_domain=r.out_of_domain,
        )
        write_json(out / f"{path.stem}.json", doc)
        grad_title = "Grad-CAM" + (f" (agreement {e.agreement:.2f})" if e.agreement is not None else "")
        shown = [("anomaly", "anomaly map", r.anomaly_map), ("gradcam", grad_title, e.display("gradcam"))]
        png = method_panels(frame, shown, t.map_low, t.map_high, t.decision, header=header(e))
        cv2.imwrite(str(out / f"{path.stem}.png"), cv2.cvtColor(png, cv2.COLOR_RGB2BGR))
        if r.out_of_domain is not None:
            click.echo(f"{path}: {OUT_OF_DOMAIN_LABEL}, routed to review: {r.out_of_domain} (score {r.score:.4f})")
        else:
            click.echo(f"{path}: {r.verdict} (score {r.score:.4f}, threshold {r.threshold:.4f})")
    if failed:
        raise InspectorError(f"{len(failed)} of {len(images)} image(s) could not be read: {'; '.join(failed[:3])}")


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the synthetic data and models go (default: the user cache folder).",
)
@device_option
def demo_cmd(workdir: Path | None, device: str) -> None:
    """Make synthetic data, train on it, evaluate, and print the figures. Needs no downloads."""
    from inspector import demo as demo_mod

    bars = StageBars(show_progress())
    try:
        reports = demo_mod.run_demo(workdir, device=device, progress=bars, echo=bars.echo)
    finally:
        bars.close()
    click.echo(
        json.dumps({k: {"image_auroc": v["image_auroc"], "pixel_auroc": v["pixel_auroc"]} for k, v in reports.items()})
    )


def register(main: click.Group) -> None:
    for cmd in (train_cmd, eval_cmd, predict_cmd, demo_cmd):
        main.add_command(cmd)
