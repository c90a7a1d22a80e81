"""``inspector feedback | golden`` and ``inspector models promote``: from the operator's decision back to the model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from inspector.cli.audit_cmds import PASSWORD_ENV, db_option, login, opened
from inspector.cli.common import device_option, root_option


@click.group("feedback")
def feedback_group() -> None:
    """The queue of operator overrules and coded rejects, for the engineer to confirm or dismiss.

    \b
    Example:
      inspector feedback list --db audit.db
    """


@feedback_group.command("list")
@db_option
@click.option("--all", "show_all", is_flag=True, help="Also list candidates already ruled on.")
def feedback_list(db: str | None, show_all: bool) -> None:
    """List candidates: decision id, status, verdict -> decision, operator, reason, frame.

    \b
    Example:
      inspector feedback list --db audit.db --all
    """
    from inspector.audit.feedback import candidates

    with opened(db) as store:
        rows = candidates(store, status=None if show_all else "open")
        for c in rows:
            d = c.decision
            frame = store.inspection(d.inspection_id, images=False).frame_path
            ruling = f" -> {c.label}{':' + c.defect_type if c.defect_type else ''} by {c.ruled_by}" if c.label else ""
            click.echo(
                f"{d.id:>5}  {c.status:<9} {d.verdict}->{d.decision:<6} {d.user_id:<10} "
                f"[{d.reason_code or '-'}] {d.reason_text or ''}  inspection {d.inspection_id} {d.source} "
                f"score {d.score:.3f} frame {frame}{ruling}"
            )
        click.echo(f"{len(rows)} candidate(s)")


@feedback_group.command("confirm")
@click.argument("decision_id", type=int)
@db_option
@click.option("--as", "actor_id", required=True, metavar="ID", help="Engineer (password: prompt or env).")
@click.option("--good", "label", flag_value="good", help="A good part: an image for the memory bank.")
@click.option("--defect", "defect_type", default=None, metavar="TYPE", help="A defect example of TYPE.")
@click.option("--noise", "label", flag_value="noise", help="Neither: nothing to learn from it.")
@click.option("--note", default="", help="Free text kept with the ruling.")
def feedback_confirm(
    decision_id: int, db: str | None, actor_id: str, label: str | None, defect_type: str | None, note: str
) -> None:
    """Confirm a candidate as a good image, a defect example with a type, or noise (logged).

    \b
    Example:
      inspector feedback confirm 12 --defect chip --as eng1 --db audit.db
    """
    from inspector.audit.feedback import confirm

    if (label is None) == (defect_type is None):
        raise click.UsageError("give exactly one of --good, --defect TYPE, --noise")
    with opened(db) as store:
        eid = confirm(store, login(store, actor_id), decision_id, label or "defect", defect_type, note)
    click.echo(f"decision {decision_id} confirmed as {defect_type or label} (event {eid})")


@feedback_group.command("dismiss")
@click.argument("decision_id", type=int)
@db_option
@click.option("--as", "actor_id", required=True, metavar="ID", help="Engineer (password: prompt or env).")
@click.option("--reason", required=True, help="Why it teaches the model nothing (recorded).")
def feedback_dismiss(decision_id: int, db: str | None, actor_id: str, reason: str) -> None:
    """Dismiss a candidate, with a reason (logged).

    \b
    Example:
      inspector feedback dismiss 13 --reason "operator slip, corrected" --as eng1 --db audit.db
    """
    from inspector.audit.feedback import dismiss

    with opened(db) as store:
        eid = dismiss(store, login(store, actor_id), decision_id, reason)
    click.echo(f"decision {decision_id} dismissed (event {eid})")


@feedback_group.command("export")
@db_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def feedback_export(db: str | None, output: Path) -> None:
    """Write a manifest of the confirmed good frames, for ``inspector train --update --add``.

    Its paths are relative to the store's frames folder, which the command prints (use it as --root).

    \b
    Example:
      inspector feedback export --db audit.db -o confirmed_good.json
    """
    from inspector.feedback_data import confirmed_good_manifest

    with opened(db) as store:
        manifest, root = confirmed_good_manifest(store)
    manifest.save(output)
    click.echo(f"{len(manifest.items)} confirmed good frame(s) -> {output} (root: {root})")


@feedback_group.command("train-types")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="Version to start from.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="New version directory.")
@db_option
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="Labelled defect images to add.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None, help="Data root of --manifest.")
@click.option(
    "--min-examples", type=click.IntRange(2), default=5, show_default=True, help="Before this, 'unknown type'."
)
@click.option(
    "--descriptor",
    type=click.Choice(["defect-centred", "pooled"]),
    default="defect-centred",
    show_default=True,
    help="Features the head and gate read: whole-image pooled, or weighted by the anomaly map.",
)
def feedback_train_types(
    model_dir: Path,
    out: Path,
    db: str | None,
    manifest: Path | None,
    root: Path | None,
    min_examples: int,
    descriptor: str,
) -> None:
    """A new version whose defect head knows the types confirmed in the queue (plus --manifest's).

    \b
    Example:
      inspector feedback train-types --model runs/pill --out runs/pill-v2 --db audit.db
    """
    from inspector.defect_types import train_types
    from inspector.feedback_data import confirmed_defect_examples, manifest_examples

    with opened(db) as store:
        examples = confirmed_defect_examples(store)
    if manifest is not None:
        if root is None:
            raise click.UsageError("--manifest needs --root")
        examples += manifest_examples(manifest, root)
    summary = train_types(model_dir, out, examples, min_examples=min_examples, descriptor=descriptor)
    click.echo(f"new version {out}: {json.dumps(summary)}")


@click.group("golden")
def golden_group() -> None:
    """A frozen golden set per product: labelled images every candidate version is judged on.

    \b
    Example:
      inspector golden set pill --manifest golden.json --root data --as eng1 --db audit.db
    """


@golden_group.command("set")
@click.argument("product")
@click.option("--manifest", type=click.Path(path_type=Path), required=True)
@root_option
@db_option
@click.option("--as", "actor_id", required=True, metavar="ID", help="Engineer.")
@click.option("--replace-reason", default="", help="Needed to replace a product's frozen set (recorded).")
def golden_set(product: str, manifest: Path, root: Path, db: str | None, actor_id: str, replace_reason: str) -> None:
    """Freeze the manifest's labelled images (checked by sha256) as PRODUCT's golden set.

    \b
    Example:
      inspector golden set pill --manifest golden.json --root ../shared/data/pillqc --as eng1
    """
    from inspector.golden import freeze
    from inspector.manifest import load_manifest

    m = load_manifest(manifest)
    with opened(db) as store:
        g = freeze(store, login(store, actor_id), product, m, root, replace_reason)
    click.echo(f"golden set '{product}' frozen: {len(g.manifest.items)} images (event {g.event_id})")


@golden_group.command("eval")
@click.argument("product")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True)
@root_option
@db_option
@device_option
def golden_eval(product: str, model_dir: Path, root: Path, db: str | None, device: str) -> None:
    """Evaluate a version on PRODUCT's golden set (read-only; promotion records its own evaluation).

    \b
    Example:
      inspector golden eval pill --model runs/pill-v2 --root ../shared/data/pillqc
    """
    from inspector.golden import current, evaluate_dir

    with opened(db) as store:
        g = current(store, product)
    if g is None:
        raise click.ClickException(f"product {product!r} has no golden set: freeze one with inspector golden set")
    click.echo(json.dumps(evaluate_dir(model_dir, g.manifest, root, device)))


@click.command("promote")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="Candidate version.")
@click.option("--product", required=True, help="Whose golden set judges it.")
@root_option
@db_option
@click.option("--as", "actor_id", required=True, metavar="ID", help="Signing engineer (password entered again).")
@click.option("--meaning", default="reviewed and approved", show_default=True, help="What the signature means.")
@click.option("--tolerance", type=float, default=0.01, show_default=True, help="Largest allowed drop per figure.")
@device_option
def promote_cmd(
    model_dir: Path,
    product: str,
    root: Path,
    db: str | None,
    actor_id: str,
    meaning: str,
    tolerance: float,
    device: str,
) -> None:
    """Activate a candidate only if the golden set does not regress, with the engineer's e-signature.

    \b
    Example:
      inspector models promote --model runs/pill-v2 --product pill --root ../shared/data/pillqc --as eng1
    """
    from inspector.golden import promote

    password = os.environ.get(PASSWORD_ENV) or str(click.prompt(f"Signature: password for {actor_id}", hide_input=True))
    with opened(db) as store:
        mid = promote(
            store, actor_id, password, model_dir, product, root, meaning=meaning, tolerance=tolerance, device=device
        )
    click.echo(f"model version {mid} promoted and active, signed by {actor_id}: {meaning}")


def register(main: click.Group) -> None:
    """Adds ``feedback`` and ``golden``, and ``promote`` under the existing ``models`` group."""
    main.add_command(feedback_group)
    main.add_command(golden_group)
    models = main.commands.get("models")
    if isinstance(models, click.Group):
        models.add_command(promote_cmd)


def run_update(
    update_from: Path | None, add: Path | None, remove: Path | None, root: Path, out: Path, device: str
) -> None:
    """``inspector train --update FROM --add MANIFEST [--remove MANIFEST] --out DIR``."""
    from inspector.cli.common import StageBars, show_progress
    from inspector.manifest import load_manifest
    from inspector.model_update import update_model

    if update_from is None or (add is None and remove is None):
        raise click.UsageError("--update FROM_MODEL goes with --add MANIFEST and/or --remove MANIFEST")
    bars = StageBars(show_progress())
    try:
        result = update_model(
            update_from,
            out,
            root,
            add=load_manifest(add) if add else None,
            remove=load_manifest(remove) if remove else None,
            device=device,
            progress=bars,
        )
    finally:
        bars.close()
    parts = []
    if result.removed:
        parts.append(f"removed {result.removed.rows_removed} rows of {result.removed.images_matched} image(s)")
    if result.added:
        a = result.added
        std = "re-standardised" if a.restandardized else f"statistics kept (drift {a.drift:.3f})"
        parts.append(f"added {a.rows_added} rows from {a.new_patches} patches; {std}")
    cost = "" if result.ms_per_frame is None else f", {result.ms_per_frame:.1f} ms per frame with Grad-CAM"
    click.echo(
        f"updated {update_from} -> {out} in {result.seconds:.1f} s: {'; '.join(parts)}; bank {result.bank_rows} rows"
        + cost
    )
    from inspector.model_update import threshold_line
    from models.patchcore.serialization import read_model_json

    doc = read_model_json(out)
    click.echo(threshold_line(doc.get("metadata") or {}))
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    if doc.get("config", {}).get("map_layers"):
        # The update changes the score bank only (models/patchcore/fine_map.py).
        click.echo("the anomaly map's fine bank is kept from the last full fit; train without --update to refresh it")
