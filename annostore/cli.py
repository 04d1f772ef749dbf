"""The ``annostore`` command line: a thin layer over the Python API.

Data goes to stdout, messages to stderr. Exit status: 0 on success, 1 on an annostore
error (one line; ``--debug`` shows the traceback), 2 on a usage mistake.
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile
from typing import Any

import click
import duckdb

from . import __version__, _cli_convert, _cli_ls
from ._output import chosen_format, output_options, render_record, render_rows
from .dataset import Dataset
from .errors import AnnostoreError
from .label_configs import TASK_TYPES, label_config
from .store import DEFAULT_STORE, STORE_ENV, Store
from .store import open as open_store
from .version import Version


class CommandError(click.ClickException):
    """An AnnostoreError (or an OS error, or running out of memory) shown as one line,
    exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class AnnostoreGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (AnnostoreError, OSError) as exc:
            if ctx.params.get("debug") or os.environ.get("ANNOSTORE_DEBUG"):
                raise
            raise CommandError(str(exc) or type(exc).__name__) from exc
        except (MemoryError, duckdb.OutOfMemoryException) as exc:
            # the machine's limit: one line that says so, not a traceback
            if ctx.params.get("debug") or os.environ.get("ANNOSTORE_DEBUG"):
                raise
            reason = str(exc).split("\n")[0].removeprefix("Out of Memory Error: ")
            reason = reason or "no more memory could be allocated"
            raise CommandError(f"out of memory: {reason}") from exc


def _store(ctx: click.Context) -> Store:
    obj = ctx.find_root().obj
    if "store" not in obj:
        obj["store"] = open_store(obj["url"])
    return obj["store"]


def _dataset_and_ref(ctx: click.Context, spec: str) -> tuple[Dataset, str]:
    name, _, ref = spec.partition("@")
    return _store(ctx).dataset(name), ref or "latest"


def _author(author: str | None) -> str | None:
    if author:
        return author
    if os.environ.get("ANNOSTORE_AUTHOR"):
        return os.environ["ANNOSTORE_AUTHOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _log_row(version: Version) -> dict[str, Any]:
    row = version.to_dict()
    row["id"] = version.id[:12]
    row["created_at"] = version.created_at.strftime("%Y-%m-%d %H:%M:%S")
    row["tasks"], row["annotations"] = version.counts["tasks"], version.counts["annotations"]
    row["regions"], row["labels"] = version.counts["regions"], version.counts["labels"]
    row["tags"] = ",".join(row["tags"])
    return row


def _changes_text(version: Version, skip_unchanged: bool) -> str:
    """``regions +18 ~11 -4; labels +1 ~0 -0``: rows inserted, updated, deleted per table."""
    return "; ".join(
        f"{table} +{c['inserted']} ~{c['updated']} -{c['deleted']}"
        for table, c in version.changes.items()
        if any(c.values()) or not skip_unchanged
    )


LOG_COLUMNS = [
    "number",
    "id",
    "created_at",
    "author",
    "tasks",
    "annotations",
    "regions",
    "labels",
    "tags",
    "message",
]


@click.group(cls=AnnostoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    "url",
    envvar=STORE_ENV,
    default=DEFAULT_STORE,
    show_default=True,
    help=f"Where versions are kept: a path or fsspec URL (s3://bucket/prefix, memory://…). Also ${STORE_ENV}.",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(__version__, prog_name="annostore")
@click.pass_context
def cli(ctx: click.Context, url: str, debug: bool) -> None:
    """annostore: versioned labels for ML datasets, with SQL, statistics and diffs."""
    ctx.ensure_object(dict)
    ctx.obj["url"] = url
    ctx.obj["debug"] = debug


@cli.command("datasets")
@output_options
@click.pass_context
def datasets_command(ctx: click.Context, output_format: str, as_json: bool) -> None:
    """List the datasets in the store."""
    store = _store(ctx)
    rows = []
    for name in store.datasets():
        latest = store.dataset(name).latest
        rows.append(
            {
                "dataset": name,
                "versions": latest.number if latest else 0,
                "latest_id": latest.id[:12] if latest else None,
                "tasks": latest.counts["tasks"] if latest else 0,
                "regions": latest.counts["regions"] if latest else 0,
            }
        )
    click.echo(
        render_rows(
            rows,
            ["dataset", "versions", "latest_id", "tasks", "regions"],
            chosen_format(output_format, as_json),
        )
    )


@cli.command("create")
@click.argument("dataset")
@click.option("--exist-ok", is_flag=True, help="Succeed if the dataset already exists.")
@click.pass_context
def create_command(ctx: click.Context, dataset: str, exist_ok: bool) -> None:
    """Create an empty dataset."""
    store = _store(ctx)
    store.create_dataset(dataset, exist_ok=exist_ok)
    click.echo(f"created dataset {dataset!r} in {store.url}", err=True)


@cli.command("log")
@click.argument("dataset")
@output_options
@click.pass_context
def log_command(ctx: click.Context, dataset: str, output_format: str, as_json: bool) -> None:
    """List a dataset's versions, newest first."""
    versions = _store(ctx).dataset(dataset).log()
    fmt = chosen_format(output_format, as_json)
    if fmt in ("json", "jsonl"):
        click.echo(render_rows([v.to_dict() for v in versions], [], fmt))
    else:
        click.echo(render_rows([_log_row(v) for v in versions], LOG_COLUMNS, fmt))


@cli.command("show")
@click.argument("spec", metavar="DATASET[@REF]")
@output_options
@click.pass_context
def show_command(ctx: click.Context, spec: str, output_format: str, as_json: bool) -> None:
    """Show one version: provenance, row counts, what its commit changed, how it is stored.

    REF is a version number, 'latest' (the default), a tag or a content id prefix.
    """
    dataset, ref = _dataset_and_ref(ctx, spec)
    version = dataset.version(ref)
    record = version.to_dict()
    record["storage"] = version.manifest.stats
    fmt = chosen_format(output_format, as_json)
    if fmt == "table":
        record["counts"] = ", ".join(f"{k} {v}" for k, v in version.counts.items())
        record["changes"] = _changes_text(version, skip_unchanged=False)
        record["tags"] = ", ".join(record["tags"])
    click.echo(render_record(record, fmt))


@cli.command("tag")
@click.argument("dataset")
@click.argument("name")
@click.argument("ref", default="latest")
@click.option("--force", is_flag=True, help="Move the tag if it already names another version.")
@click.pass_context
def tag_command(ctx: click.Context, dataset: str, name: str, ref: str, force: bool) -> None:
    """Name version REF (default: latest) of DATASET as NAME."""
    version = _store(ctx).dataset(dataset).tag(name, ref, force=force)
    click.echo(f"{dataset}@{name} -> version {version.number} ({version.id[:12]})", err=True)


@cli.command("tags")
@click.argument("dataset")
@output_options
@click.pass_context
def tags_command(ctx: click.Context, dataset: str, output_format: str, as_json: bool) -> None:
    """List a dataset's tags."""
    tags = _store(ctx).dataset(dataset).tags()
    rows = [{"tag": tag, "version": number} for tag, number in sorted(tags.items())]
    click.echo(render_rows(rows, ["tag", "version"], chosen_format(output_format, as_json)))


@cli.command("compact")
@click.argument("dataset")
@click.option("--author", help="Who compacts (default: $ANNOSTORE_AUTHOR or the login name).")
@click.pass_context
def compact_command(ctx: click.Context, dataset: str, author: str | None) -> None:
    """Rewrite the latest version's files without tombstones (a new version, same content)."""
    version = _store(ctx).dataset(dataset).compact(author=_author(author))
    click.echo(f"compacted {dataset} into version {version.number} ({version.id[:12]})", err=True)


@cli.command("gc")
@click.option(
    "--grace",
    "grace_seconds",
    type=float,
    default=3600.0,
    show_default=True,
    help="Keep unreferenced files younger than this many seconds (commits in flight).",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed, remove nothing.")
@output_options
@click.pass_context
def gc_command(
    ctx: click.Context, grace_seconds: float, dry_run: bool, output_format: str, as_json: bool
) -> None:
    """Remove files that no version references (left by interrupted commits or compaction)."""
    report = _store(ctx).gc(grace_seconds, dry_run=dry_run)
    fmt = chosen_format(output_format, as_json)
    record = report.to_dict()
    if fmt == "table":
        record.pop("files")
        record["dry_run"] = dry_run
    click.echo(render_record(record, fmt))
    for name, reason in report.skipped.items():
        click.echo(f"warning: skipped dataset {name!r}: {reason}", err=True)


@cli.command("verify")
@output_options
@click.pass_context
def verify_command(ctx: click.Context, output_format: str, as_json: bool) -> None:
    """Re-read every file of every version and check it against its sha256. Exit 1 on problems."""
    report = _store(ctx).verify()
    fmt = chosen_format(output_format, as_json)
    if fmt in ("json", "jsonl"):
        click.echo(render_record(report.to_dict(), fmt))
    else:
        summary = report.to_dict()
        problems = summary.pop("problems")
        click.echo(render_record(summary, "table"))
        if problems:
            click.echo(render_rows(problems, ["dataset", "path", "problem"], fmt))
    if not report.ok:
        click.echo(f"error: {len(report.problems)} problem(s) found", err=True)
        ctx.exit(1)


@cli.command("sql")
@click.argument("query")
@click.option(
    "--dataset",
    "spec",
    required=True,
    metavar="DATASET[@REF]",
    help="The version to query (default ref: latest).",
)
@output_options
@click.pass_context
def sql_command(
    ctx: click.Context, query: str, spec: str, output_format: str, as_json: bool
) -> None:
    """Run one read-only SELECT over a version.

    Views: tasks, annotations, labels, and regions (with task_id and x_px, y_px, w_px,
    h_px, area_px where the image size is known); regions_v3 and the like read other
    versions of the same dataset.
    """
    dataset, ref = _dataset_and_ref(ctx, spec)
    result = dataset.version(ref).sql(query)
    click.echo(
        render_rows(result.to_pylist(), result.column_names, chosen_format(output_format, as_json))
    )


@cli.command("stats")
@click.argument("spec", metavar="DATASET[@REF]")
@click.option(
    "--recompute",
    is_flag=True,
    help="Compute again instead of reading the stats kept in the store.",
)
@output_options
@click.pass_context
def stats_command(
    ctx: click.Context, spec: str, recompute: bool, output_format: str, as_json: bool
) -> None:
    """Statistics of a version: labeled / unlabeled tasks, regions per label and type,
    annotators, model versions, splits, regions per task, box sizes, unused labels.
    Computed once per version and kept in the store."""
    dataset, ref = _dataset_and_ref(ctx, spec)
    stats = dataset.version(ref).stats(recompute=recompute)
    click.echo(render_record(stats, chosen_format(output_format, as_json)))


@cli.command("diff")
@click.argument("dataset")
@click.argument("a")
@click.argument("b", default="latest")
@click.option(
    "--iou",
    "iou_threshold",
    type=float,
    default=0.5,
    show_default=True,
    help="Pair a removed and an added box on the same task and label at or above this IoU (reported as changed).",
)
@click.option("--no-pairing", is_flag=True, help="Do not pair removed and added regions by IoU.")
@click.option(
    "--counts",
    "counts_only",
    is_flag=True,
    help="Only rows added, removed, changed and unchanged per table, by key (from the commits' changesets: fast).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    help="Write one row per changed region to this Parquet file.",
)
@click.option(
    "--recompute",
    is_flag=True,
    help="Compare the versions again instead of reading the details kept in the store.",
)
@output_options
@click.pass_context
def diff_command(
    ctx: click.Context,
    dataset: str,
    a: str,
    b: str,
    iou_threshold: float,
    no_pairing: bool,
    counts_only: bool,
    output: str | None,
    recompute: bool,
    output_format: str,
    as_json: bool,
) -> None:
    """What changed from version A to version B (default: latest) of DATASET."""
    result = (
        _store(ctx)
        .dataset(dataset)
        .diff(a, b, iou_threshold=None if no_pairing else iou_threshold, recompute=recompute)
    )
    if counts_only:
        if output:
            raise click.UsageError("--output writes per-region rows; it does not go with --counts")
        rows = [
            {
                "table": name,
                "added": t.added,
                "removed": t.removed,
                "changed": t.changed,
                "unchanged": t.unchanged,
            }
            for name, t in result.tables.items()
        ]
        columns = ["table", "added", "removed", "changed", "unchanged"]
        click.echo(render_rows(rows, columns, chosen_format(output_format, as_json)))
        return
    if output:
        result.write_parquet(output)
        click.echo(f"wrote {result.regions.num_rows} region changes to {output}", err=True)
    record = result.to_dict()
    fmt = chosen_format(output_format, as_json)
    if fmt == "table":
        record["label_changes"] = ", ".join(
            f"{c['from']} -> {c['to']}: {c['count']}" for c in record["label_changes"]
        )
    click.echo(render_record(record, fmt))


@cli.command("demo")
@click.option(
    "--dataset",
    default="demo",
    show_default=True,
    help="Name of the demo dataset (replaced if present).",
)
@click.option(
    "--export",
    "export_to",
    type=click.Path(file_okay=False),
    help="Folder for the COCO and YOLO exports (default: a folder in the temp directory).",
)
@click.pass_context
def demo_command(ctx: click.Context, dataset: str, export_to: str | None) -> None:
    """Build a small sample dataset (generated, no download), commit two versions, show the log,
    the statistics of each version and the diff between them, then export the latest
    version to COCO and YOLO with what each format lost."""
    from .demo import run_demo

    store = _store(ctx)
    if dataset in store.datasets():
        click.echo(f"replacing the existing {dataset!r} dataset in {store.url}", err=True)
    versions = run_demo(store, dataset)
    click.echo(f"store: {store.url}", err=True)
    for version in versions:
        changes = _changes_text(version, skip_unchanged=True)
        click.echo(f"committed {dataset}@{version.number}: {version.message} ({changes})", err=True)
    click.echo(
        render_rows([_log_row(v) for v in store.dataset(dataset).log()], LOG_COLUMNS, "table")
    )
    click.echo()
    for version in versions:
        stats = version.stats()
        per_label = ", ".join(
            f"{label} {n}" for label, n in stats["regions_per_label_by_kind"]["annotation"].items()
        )
        click.echo(
            f"{dataset}@{version.number}: {stats['labeled_task_count']} of {stats['task_count']} tasks labeled "
            f"({stats['background_task_count']} background), {stats['region_count']} regions; "
            f"labeled regions per label: {per_label}"
        )
    first, last = versions[0].number, versions[-1].number
    summary = store.dataset(dataset).diff(first, last).to_dict()
    moves = (
        ", ".join(f"{c['from']} -> {c['to']} {c['count']}" for c in summary["label_changes"])
        or "none"
    )
    median_iou = summary["geometry_iou"]["median"]
    click.echo(
        f"diff {dataset}@{first} -> @{last}: regions +{summary['regions_added']} -{summary['regions_removed']} "
        f"~{summary['regions_changed']} ({summary['regions_unchanged']} unchanged); label changes: {moves}; "
        f"labels added: {', '.join(summary['labels_added']) or 'none'}; "
        f"median IoU of moved boxes: {'none' if median_iou is None else f'{median_iou:.3f}'}"
    )
    from .demo import export_demo

    click.echo()
    folder = export_to or os.path.join(tempfile.gettempdir(), f"annostore-demo-{dataset}")
    for target, report in export_demo(versions[-1], folder):
        losses = [f"dropped {n} {what}" for what, n in sorted(report.dropped.items())]
        losses += [f"approximated {n} {what}" for what, n in sorted(report.approximated.items())]
        click.echo(f"exported {dataset}@{last} to {report.format}: {target}")
        for line in losses or ["nothing lost"]:
            click.echo(f"  {line}")


@cli.command("label-config")
@click.argument("spec", metavar="DATASET[@REF]")
@click.option(
    "--task",
    type=click.Choice(TASK_TYPES),
    help="The labeling task (default: inferred from the region types present).",
)
@click.option("--data-key", help="The task data key the object tag shows (default: image or text).")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the config to this file.")
@click.pass_context
def label_config_command(
    ctx: click.Context, spec: str, task: str | None, data_key: str | None, output: str | None
) -> None:
    """Print (or write) a Label Studio label config for a version's label set."""
    dataset, ref = _dataset_and_ref(ctx, spec)
    xml = label_config(task, dataset.version(ref).tables, data_key=data_key)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(xml)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(xml, nl=False)


_cli_convert.add_commands(cli, _store, _dataset_and_ref, _author)
_cli_ls.add_commands(cli, _store, _dataset_and_ref, _author)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="annostore")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
