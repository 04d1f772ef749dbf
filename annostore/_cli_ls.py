"""``annostore ls push | pull | status``: the Label Studio loop from the command line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ._ls_client import TOKEN_ENV, URL_ENV
from ._output import chosen_format, output_options, render_record
from .label_configs import TASK_TYPES

__all__ = ["add_commands"]


def _server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--url, --token (never echoed), --project and --timeout."""
    command = click.option(
        "--timeout",
        type=float,
        default=60.0,
        show_default=True,
        help="Seconds to wait for each answer from the server.",
    )(command)
    command = click.option(
        "--project", help="The Label Studio project's title (default: the dataset's name)."
    )(command)
    command = click.option(
        "--token",
        envvar=TOKEN_ENV,
        required=True,
        help=f"Label Studio API token, legacy or personal access token (or ${TOKEN_ENV}). Never printed or stored.",
    )(command)
    command = click.option(
        "--url",
        envvar=URL_ENV,
        required=True,
        help=f"The Label Studio server, e.g. http://localhost:8080 (or ${URL_ENV}).",
    )(command)
    return command


def add_commands(
    group: click.Group,
    store_of: Callable[[click.Context], Any],
    dataset_and_ref: Callable[[click.Context, str], tuple[Any, str]],
    author_of: Callable[[str | None], str | None],
) -> None:
    """Attach the ``ls`` group to the ``annostore`` group."""

    @group.group("ls")
    def ls_group() -> None:
        """Push versions to a Label Studio project and pull its annotations back as versions."""

    @ls_group.command("push")
    @click.argument("spec", metavar="DATASET[@REF]")
    @_server_options
    @click.option(
        "--task",
        type=click.Choice(TASK_TYPES),
        help="Labeling task of a new project's config (default: inferred from the regions).",
    )
    @output_options
    @click.pass_context
    def push_command(
        ctx: click.Context,
        spec: str,
        url: str,
        token: str,
        project: str | None,
        timeout: float,
        task: str | None,
        output_format: str,
        as_json: bool,
    ) -> None:
        """Send a version's tasks, and its predictions as pre-annotations, to Label Studio.

        Creates the project with a label config made from the label set, or uses the
        existing project of that title. Pushing again sends only what was not sent before.
        """
        from .labelstudio import push

        dataset, ref = dataset_and_ref(ctx, spec)
        result = push(
            dataset, ref, url=url, token=token, project=project, task=task, timeout=timeout
        )
        verb = "created" if result.project_created else "used"
        click.echo(
            f"{verb} project {result.project_title!r} (id {result.project_id}) on {result.url}: "
            f"sent {result.tasks_pushed} tasks and {result.predictions_pushed} predictions of "
            f"{dataset.name}@{result.version} ({result.tasks_already_there} tasks were there already)",
            err=True,
        )
        click.echo(render_record(result.to_dict(), chosen_format(output_format, as_json)))

    @ls_group.command("pull")
    @click.argument("dataset")
    @_server_options
    @click.option("-m", "--message", help="The new version's message.")
    @click.option("--author", help="Who commits (default: $ANNOSTORE_AUTHOR or the login name).")
    @output_options
    @click.pass_context
    def pull_command(
        ctx: click.Context,
        dataset: str,
        url: str,
        token: str,
        project: str | None,
        timeout: float,
        message: str | None,
        author: str | None,
        output_format: str,
        as_json: bool,
    ) -> None:
        """Commit the annotations of a Label Studio project as a new version of DATASET.

        Pulling again with nothing new in Label Studio makes no new version.
        """
        from .labelstudio import pull

        target = store_of(ctx).create_dataset(dataset, exist_ok=True)
        result = pull(
            target,
            url=url,
            token=token,
            project=project,
            message=message,
            author=author_of(author),
            timeout=timeout,
        )
        if result.new_version:
            click.echo(
                f"pulled {result.annotations_pulled} annotations ({result.regions_pulled} regions) "
                f"from project {result.project_title!r} into {dataset}@{result.version}",
                err=True,
            )
        else:
            click.echo(
                f"nothing new in project {result.project_title!r}: {dataset}@{result.version} "
                "already holds its annotations (no new version)",
                err=True,
            )
        for what, count in sorted(result.dropped.items()):
            click.echo(f"  dropped {count} {what}", err=True)
        click.echo(render_record(result.to_dict(), chosen_format(output_format, as_json)))

    @ls_group.command("status")
    @click.argument("dataset")
    @_server_options
    @output_options
    @click.pass_context
    def status_command(
        ctx: click.Context,
        dataset: str,
        url: str,
        token: str,
        project: str | None,
        timeout: float,
        output_format: str,
        as_json: bool,
    ) -> None:
        """Labeled and unlabeled tasks in the Label Studio project next to the latest version's."""
        from .labelstudio import status

        record = status(
            store_of(ctx).dataset(dataset), url=url, token=token, project=project, timeout=timeout
        )
        click.echo(render_record(record, chosen_format(output_format, as_json)))
