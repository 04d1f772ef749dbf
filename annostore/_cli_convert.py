"""The CLI commands that move labels in and out: convert, formats, import, export."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import click

from . import converters
from ._output import chosen_format, output_options, render_record, render_rows
from .convert import convert, detect_format, read, write
from .converters import ANNOTATION_POLICIES, CATEGORY_ID_POLICIES, Report

__all__ = ["add_commands"]


def _key_values(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"{flag} takes KEY=VALUE, got {pair!r}")
        lowered = value.lower()
        options[key.replace("-", "_")] = (
            True if lowered == "true" else False if lowered == "false" else value
        )
    return options


def _writer_options(
    format_name: str,
    policy: str | None,
    annotator: str | None,
    category_ids: str | None,
    overwrite: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The options the chosen writer accepts; a usage error for one it does not."""
    writer = converters.get(format_name)
    accepted = inspect.signature(writer.write).parameters
    chosen = {
        "policy": policy,
        "annotator": annotator,
        "category_ids": category_ids,
        "overwrite": overwrite or None,
        **extra,
    }
    options = {}
    for key, value in chosen.items():
        if value is None:
            continue
        if key not in accepted:
            raise click.UsageError(f"format {format_name!r} takes no option {key!r} when writing")
        options[key] = value
    return options


def _show_report(report: Report, output_format: str) -> None:
    if output_format == "table":
        click.echo(render_rows(report.rows(), ["what", "count"], "table"))
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        for skipped in report.skipped[:20]:
            click.echo(f"skipped: {skipped}", err=True)
        if len(report.skipped) > 20:
            click.echo(f"skipped: … and {len(report.skipped) - 20} more", err=True)
        return
    click.echo(render_record(report.to_dict(), output_format))


def _write_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(
        [
            click.option(
                "--policy",
                type=click.Choice(ANNOTATION_POLICIES),
                help="Which annotations a one-set-per-image format receives (default: latest).",
            ),
            click.option("--annotator", help="With --policy annotator: whose annotations."),
            click.option(
                "--category-ids",
                type=click.Choice(CATEGORY_ID_POLICIES),
                help="COCO category ids: keep the label ids, or number from 1 or 0 (default: keep).",
            ),
            click.option(
                "--strict", is_flag=True, help="Fail, writing nothing, if anything would be lost."
            ),
            click.option("--overwrite", is_flag=True, help="Replace the target if it exists."),
            click.option(
                "-w",
                "--write-option",
                "write_option",
                multiple=True,
                metavar="KEY=VALUE",
                help="A writer option (for example image_root=images/).",
            ),
        ]
    ):
        command = decorator(command)
    return command


def add_commands(
    group: click.Group,
    store_of: Callable[[click.Context], Any],
    dataset_and_ref: Callable[[click.Context, str], tuple[Any, str]],
    author_of: Callable[[str | None], str | None],
) -> None:
    """Attach the commands to the ``annostore`` group."""

    @group.command("formats")
    @output_options
    def formats_command(output_format: str, as_json: bool) -> None:
        """The formats annostore reads and writes, and what each can hold."""
        rows = []
        for name in converters.names():
            converter = converters.get(name)
            rows.append(
                {
                    "format": name,
                    "read": bool(getattr(converter, "can_read", False)),
                    "write": bool(getattr(converter, "can_write", False)),
                    "holds": ", ".join(getattr(converter, "represents", ())),
                    "description": getattr(converter, "description", ""),
                }
            )
        click.echo(
            render_rows(
                rows,
                ["format", "read", "write", "holds", "description"],
                chosen_format(output_format, as_json),
            )
        )

    @group.command("convert")
    @click.argument("source")
    @click.argument("target")
    @click.option("--from", "from_", help="Source format (detected when left out).")
    @click.option("--to", "to", required=True, help="Target format (see `annostore formats`).")
    @click.option(
        "--errors",
        type=click.Choice(["raise", "skip"]),
        default="raise",
        show_default=True,
        help="On a bad source record: stop, or skip it and list it in the report.",
    )
    @click.option(
        "-r",
        "--read-option",
        "read_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="A reader option (for example images=instances.json for a COCO results file).",
    )
    @_write_options
    @output_options
    def convert_command(
        source: str,
        target: str,
        from_: str | None,
        to: str,
        errors: str,
        read_option: tuple[str, ...],
        policy: str | None,
        annotator: str | None,
        category_ids: str | None,
        strict: bool,
        overwrite: bool,
        write_option: tuple[str, ...],
        output_format: str,
        as_json: bool,
    ) -> None:
        """Convert SOURCE to TARGET (for example a COCO file to a YOLO folder), printing
        what was read, written, and anything dropped or approximated."""
        options = _writer_options(
            to,
            policy,
            annotator,
            category_ids,
            overwrite,
            _key_values(write_option, "--write-option"),
        )
        report = convert(
            source,
            target,
            from_=from_,
            to=to,
            strict=strict,
            errors=errors,
            read_options=_key_values(read_option, "--read-option"),
            progress=lambda line: click.echo(f"{line} …", err=True),
            **options,
        )
        _show_report(report, chosen_format(output_format, as_json))

    @group.command("import")
    @click.argument("dataset")
    @click.argument("source")
    @click.option("--format", "format_name", help="Source format (detected when left out).")
    @click.option("-m", "--message", help="The version's message.")
    @click.option("--author", help="Who commits (default: $ANNOSTORE_AUTHOR or the login name).")
    @click.option(
        "--errors",
        type=click.Choice(["raise", "skip"]),
        default="raise",
        show_default=True,
        help="On a bad source record: stop, or skip it and list it.",
    )
    @click.option(
        "-r",
        "--read-option",
        "read_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="A reader option.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def import_command(
        ctx: click.Context,
        dataset: str,
        source: str,
        format_name: str | None,
        message: str | None,
        author: str | None,
        errors: str,
        read_option: tuple[str, ...],
        as_json: bool,
    ) -> None:
        """Read SOURCE and commit it as the next version of DATASET (created when missing).
        Importing data identical to the latest version makes no new version."""
        name = format_name or detect_format(source)
        tables, report = read(
            source, name, errors=errors, **_key_values(read_option, "--read-option")
        )
        store = store_of(ctx)
        target = (
            store.dataset(dataset) if dataset in store.datasets() else store.create_dataset(dataset)
        )
        before = target.version("latest").number if target.log() else None
        version = target.commit(
            tables, message=message or f"import {name} {source}", author=author_of(author)
        )
        report.counts = {"version": version.number, **report.counts}
        if version.number == before:
            report.notes.append(f"no change: {dataset}@{version.number} already holds this data")
        _show_report(report, "json" if as_json else "table")

    @group.command("export")
    @click.argument("spec", metavar="DATASET[@REF]")
    @click.argument("target")
    @click.option("--to", "to", required=True, help="Target format (see `annostore formats`).")
    @_write_options
    @output_options
    @click.pass_context
    def export_command(
        ctx: click.Context,
        spec: str,
        target: str,
        to: str,
        policy: str | None,
        annotator: str | None,
        category_ids: str | None,
        strict: bool,
        overwrite: bool,
        write_option: tuple[str, ...],
        output_format: str,
        as_json: bool,
    ) -> None:
        """Write a version of a dataset to TARGET in format --to."""
        dataset, ref = dataset_and_ref(ctx, spec)
        options = _writer_options(
            to,
            policy,
            annotator,
            category_ids,
            overwrite,
            _key_values(write_option, "--write-option"),
        )
        report = write(dataset.version(ref).tables, target, to, strict=strict, **options)
        _show_report(report, chosen_format(output_format, as_json))

    del formats_command, convert_command, import_command, export_command  # registered above
