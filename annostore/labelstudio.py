"""The Label Studio loop: push a version's tasks and predictions, pull the annotations back
as a new version, compare the two sides' counts.

A dataset remembers each Label Studio project it was pushed to or pulled from in a small
link file in the store (``datasets/<name>/links/label-studio/<key>.json``: the server URL,
the project id, ``task_id`` ↔ Label Studio task id, the predictions pushed and the
annotations pulled). That mapping is what makes pushing again add only new tasks and
pulling again with nothing new make no version. The token is never stored.

What a pull makes: the dataset's latest version, with the project's annotations (made by
people in Label Studio) in place of those the last pull brought; tasks, predictions and
every other annotation stay as they are in the dataset. Tasks created in Label Studio
itself are added with the id ``ls:<project id>:<task id>``; pulled annotations are named
``ls:<project id>:<annotation id>``. Predictions stay the dataset's own (Label Studio's
export lists them by id only).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ._ls_client import TITLE_LENGTH, LabelStudioClient
from ._sql import connection, literal
from .convert import read, write
from .errors import AnnostoreError, NotFoundError, RemoteError
from .label_configs import label_config
from .tables import Tables

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["PullResult", "PushResult", "pull", "push", "status"]

#: tasks sent per import request (Label Studio takes up to 250k; smaller batches make an
#: interrupted push lose little and report exactly what landed)
BATCH_SIZE = 500
LINK_FOLDER = "links/label-studio"


@dataclass
class PushResult:
    """What :func:`push` did."""

    url: str
    project_id: int
    project_title: str
    project_created: bool
    tasks_pushed: int
    tasks_already_there: int
    predictions_pushed: int
    version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PullResult:
    """What :func:`pull` did; ``version`` is the new version, or the latest when nothing changed."""

    url: str
    project_id: int
    project_title: str
    version: int
    new_version: bool
    tasks_in_project: int
    annotations_pulled: int
    regions_pulled: int
    tasks_added: int
    changes: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------ the link file


@dataclass
class _Link:
    url: str
    project_id: int
    project_title: str
    tasks: dict[str, int] = field(default_factory=dict)  # annostore task_id → LS task id
    predictions: list[str] = field(default_factory=list)  # annotation ids pushed
    annotations: list[str] = field(default_factory=list)  # annotation ids pulled

    def to_json(self) -> bytes:
        record = dict(self.__dict__, updated_at=datetime.now(timezone.utc).isoformat())
        return json.dumps(record, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")


def _link_path(dataset: Dataset, url: str, project_id: int) -> str:
    key = hashlib.sha256(f"{url.rstrip('/')}#{project_id}".encode()).hexdigest()[:16]
    return f"{dataset._folder}/{LINK_FOLDER}/{key}.json"


def _load_link(dataset: Dataset, url: str, project: dict[str, Any]) -> _Link:
    path = _link_path(dataset, url, project["id"])
    if not dataset._storage.exists(path):
        return _Link(url=url, project_id=int(project["id"]), project_title=project["title"])
    try:
        record = json.loads(dataset._storage.read_bytes(path))
        return _Link(
            url=record["url"],
            project_id=int(record["project_id"]),
            project_title=project["title"],
            tasks={str(k): int(v) for k, v in record["tasks"].items()},
            predictions=[str(a) for a in record["predictions"]],
            annotations=[str(a) for a in record["annotations"]],
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AnnostoreError(
            f"{dataset._storage.full(path)}: the Label Studio link file is damaged ({exc}); "
            "remove it to start the link afresh (the next push uploads every task again)"
        ) from None


def _save_link(dataset: Dataset, link: _Link) -> None:
    dataset._storage.write_whole(_link_path(dataset, link.url, link.project_id), link.to_json())


# ------------------------------------------------------------------------------- push


def _title(dataset: Dataset, project: str | None) -> str:
    title = project or dataset.name
    low, high = TITLE_LENGTH
    if not low <= len(title) <= high:
        raise AnnostoreError(
            f"Label Studio project titles have {low} to {high} characters; {title!r} has "
            f"{len(title)} (pass --project NAME)"
        )
    return title


def _existing_project(
    dataset: Dataset, url: str, token: str, project: str | None, timeout: float
) -> tuple[LabelStudioClient, str, dict[str, Any]]:
    """The client, the title and the project of that title (NotFoundError when none)."""
    client = LabelStudioClient(url, token, timeout=timeout)
    title = _title(dataset, project)
    found = client.find_project(title)
    if found is None:
        raise NotFoundError(f"Label Studio at {client.url} has no project titled {title!r}")
    return client, title, found


def _is_in(values: pa.ChunkedArray | pa.Array, members: list[str]) -> pa.Array:
    return pc.fill_null(pc.is_in(values, value_set=pa.array(members, pa.string())), False)


def _rendered(tables: Tables) -> list[dict[str, Any]]:
    """``tables`` as Label Studio import records (the export format without ids), one per
    task in ``task_id`` order."""
    with tempfile.TemporaryDirectory(prefix="annostore-ls-") as folder:
        target = os.path.join(folder, "tasks.json")
        write(tables, target, "label-studio")
        with open(target, "rb") as handle:
            records = json.load(handle)
    expected = sorted(tables.tasks.column("task_id").to_pylist())
    for task_id, record in zip(expected, records, strict=True):
        # the writer names each task by its task_id where it can: the order must agree
        written = record.pop("id", None)
        if written is not None and str(written) != task_id:
            raise AnnostoreError(
                f"internal error: rendered task {written!r} where {task_id!r} was expected"
            )
        record.pop("annotations", None)
        for prediction in record.get("predictions", []):
            prediction.pop("id", None)
    return records


def push(
    dataset: Dataset,
    ref: int | str = "latest",
    *,
    url: str,
    token: str,
    project: str | None = None,
    task: str | None = None,
    timeout: float = 60.0,
) -> PushResult:
    """Send version ``ref`` of ``dataset`` to Label Studio: its tasks, and its predictions
    as pre-annotations.

    Creates the project (titled ``project``, default the dataset's name) with a label
    config generated from the version's label set (``task`` as in
    :func:`annostore.label_config`; inferred when None), or uses the existing project of
    that title. Pushing again sends only tasks not sent before, and predictions not sent
    before (also on tasks already there). If a request fails part-way, the tasks that
    landed are recorded, the error says how many, and pushing again sends the rest.
    """
    title = _title(dataset, project)
    client = LabelStudioClient(url, token, timeout=timeout)
    version = dataset.version(ref)
    tables = version.tables
    found = client.find_project(title)
    created = found is None
    if found is None:
        found = client.create_project(title, label_config(task, tables))
    link = _load_link(dataset, client.url, found)

    linked = list(link.tasks)
    pushed = link.predictions
    predictions = tables.annotations.filter(
        pc.and_(
            pc.equal(tables.annotations.column("kind"), "prediction"),
            pc.invert(_is_in(tables.annotations.column("annotation_id"), pushed)),
        )
    )
    regions = tables.regions.filter(
        _is_in(
            tables.regions.column("annotation_id"), predictions.column("annotation_id").to_pylist()
        )
    )
    new_tasks = tables.tasks.filter(pc.invert(_is_in(tables.tasks.column("task_id"), linked)))
    new_ids = new_tasks.column("task_id").to_pylist()
    on_new = _is_in(predictions.column("task_id"), new_ids)
    tasks_sent = predictions_sent = 0

    def landed() -> str:
        return (
            f"{tasks_sent} of {len(new_ids)} new tasks and {predictions_sent} predictions landed "
            f"in project {found['id']} before this; pushing again sends the rest"
        )

    try:
        for start in range(0, len(new_ids), BATCH_SIZE):
            batch_ids = new_ids[start : start + BATCH_SIZE]
            batch_predictions = predictions.filter(_is_in(predictions.column("task_id"), batch_ids))
            subset = Tables(
                tasks=new_tasks.slice(start, len(batch_ids)),
                annotations=batch_predictions,
                regions=regions.filter(
                    _is_in(
                        regions.column("annotation_id"),
                        batch_predictions.column("annotation_id").to_pylist(),
                    )
                ),
                labels=tables.labels,
            )
            ls_ids = client.import_tasks(found["id"], _rendered(subset))
            # the renderer writes tasks in task_id order
            for task_id, ls_id in zip(sorted(batch_ids), ls_ids, strict=True):
                link.tasks[task_id] = ls_id
            link.predictions += batch_predictions.column("annotation_id").to_pylist()
            tasks_sent += len(batch_ids)
            predictions_sent += batch_predictions.num_rows
            _save_link(dataset, link)
        later = predictions.filter(pc.invert(on_new))
        if later.num_rows:
            predictions_sent += _push_later_predictions(client, found["id"], tables, later, link)
            _save_link(dataset, link)
    except RemoteError as exc:
        raise RemoteError(f"{exc} ({landed()})", status=exc.status) from None
    return PushResult(
        url=client.url,
        project_id=int(found["id"]),
        project_title=title,
        project_created=created,
        tasks_pushed=tasks_sent,
        tasks_already_there=tables.tasks.num_rows - len(new_ids),
        predictions_pushed=predictions_sent,
        version=version.number,
    )


def _push_later_predictions(
    client: LabelStudioClient, project_id: int, tables: Tables, predictions: pa.Table, link: _Link
) -> int:
    """Predictions for tasks that are already in the project (a new model round)."""
    task_ids = sorted(set(predictions.column("task_id").to_pylist()))
    subset = Tables(
        tasks=tables.tasks.filter(_is_in(tables.tasks.column("task_id"), task_ids)),
        annotations=predictions,
        regions=tables.regions.filter(
            _is_in(
                tables.regions.column("annotation_id"),
                predictions.column("annotation_id").to_pylist(),
            )
        ),
        labels=tables.labels,
    )
    items = []
    for task_id, record in zip(task_ids, _rendered(subset), strict=True):
        for prediction in record.get("predictions", []):
            items.append(dict(prediction, task=link.tasks[task_id]))
    created = client.import_predictions(project_id, items)
    link.predictions += predictions.column("annotation_id").to_pylist()
    return created


# ------------------------------------------------------------------------------- pull


def _pulled_tables(
    client: LabelStudioClient, project: dict[str, Any]
) -> tuple[Tables, dict[str, int]]:
    """The project's export read into tables (task ids are Label Studio's), and what the
    reader dropped."""
    payload = client.export(project["id"])
    with tempfile.TemporaryDirectory(prefix="annostore-ls-") as folder:
        path = os.path.join(folder, f"label-studio-project-{project['id']}.json")
        with open(path, "wb") as handle:
            handle.write(payload)
        try:
            tables, report = read(
                path, "label-studio", label_config=project.get("label_config") or None
            )
        except AnnostoreError as exc:
            raise RemoteError(
                f"the export of project {project['id']} on {client.url} could not be read: {exc}"
            ) from None
    # The export lists predictions by id only; a pull keeps the dataset's own, so that
    # is no loss here.
    dropped = {
        k: n for k, n in report.dropped.items() if not k.startswith("predictions listed by id")
    }
    return tables, dropped


def _with_annotator_emails(client: LabelStudioClient, pulled: Tables) -> Tables:
    """Annotators as the email Label Studio knows them by, not its user id."""
    annotators = pulled.annotations.column("annotator")
    if annotators.null_count == len(annotators):
        return pulled
    try:
        emails = client.users()
    except RemoteError as exc:
        if exc.status != 403:  # a member who may not list users keeps the ids
            raise
        return pulled
    keys = pa.array(list(emails), pa.string())
    named = pc.take(pa.array(list(emails.values()), pa.string()), pc.index_in(annotators, keys))
    annotations = pulled.annotations.set_column(
        pulled.annotations.schema.get_field_index("annotator"),
        "annotator",
        pc.coalesce(named, annotators),
    )
    return Tables._trusted(metadata=pulled.metadata, **dict(pulled, annotations=annotations))


#: annotation fields Label Studio recomputes on every export ("0 minutes" ago…): kept out
#: so that pulling an unchanged project changes nothing (of the prediction an annotation
#: started from, its id is kept as ``prediction_id``)
_VOLATILE_ANNOTATION_KEYS = ("created_ago", "created_username", "prediction")


def pull(
    dataset: Dataset,
    *,
    url: str,
    token: str,
    project: str | None = None,
    message: str | None = None,
    author: str | None = None,
    timeout: float = 60.0,
) -> PullResult:
    """Commit the annotations of the Label Studio project as a new version of ``dataset``.

    The new state is the latest version with the project's annotations in place of those
    the previous pull brought (see the module's docs). Pulling again with nothing new in
    Label Studio makes no version (``new_version`` is False). Nothing is committed when
    the server fails or its export cannot be read.
    """
    client, title, found = _existing_project(dataset, url, token, project, timeout)
    link = _load_link(dataset, client.url, found)
    base = dataset.latest
    base_tables = base.tables if base else Tables()
    pulled, dropped = _pulled_tables(client, found)
    pulled = _with_annotator_emails(client, pulled)
    state, link_tasks, pulled_ids, counts = _merge(base_tables, pulled, link)
    default = f"pull from Label Studio project {title!r} ({client.url})"
    version = dataset.commit(
        state, message=message or default, author=author, base=base.number if base else None
    )
    link.tasks = link_tasks
    link.annotations = pulled_ids
    _save_link(dataset, link)
    new = base is None or version.number != base.number
    return PullResult(
        url=client.url,
        project_id=int(found["id"]),
        project_title=title,
        version=version.number,
        new_version=new,
        tasks_in_project=pulled.tasks.num_rows,
        annotations_pulled=counts["annotations"],
        regions_pulled=counts["regions"],
        tasks_added=counts["tasks"],
        changes=version.changes if new else {},
        dropped=dropped,
    )


def _merge(
    base: Tables, pulled: Tables, link: _Link
) -> tuple[Tables, dict[str, int], list[str], dict[str, int]]:
    """The new state: ``base`` with the pulled annotations in place of the last pull's."""
    prefix = f"ls:{link.project_id}:"
    known = {str(ls_id): task_id for task_id, ls_id in link.tasks.items()}
    ls_task_ids = pulled.tasks.column("task_id")
    mapping_keys = pa.array(list(known), pa.string())
    mapping_values = pa.array(list(known.values()), pa.string())

    def mapped(ls_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
        position = pc.index_in(ls_ids, value_set=mapping_keys)
        ours = (
            pc.take(mapping_values, position)
            if len(mapping_keys)
            else pa.nulls(len(ls_ids), pa.string())
        )
        return pc.coalesce(ours, pc.binary_join_element_wise(prefix, ls_ids, ""))

    with connection() as con:
        con.register("ls_tasks", pulled.tasks.set_column(0, "task_id", mapped(ls_task_ids)))
        con.register("ls_anns", pulled.annotations)
        con.register("base_tasks", base.tasks.select(["task_id"]))
        try:
            removed = json.dumps(dict.fromkeys(_VOLATILE_ANNOTATION_KEYS))
            cleaned = (
                f"json_merge_patch(json_merge_patch(a.extra::JSON, {literal(removed)}::JSON), "
                "json_object('prediction_id', a.extra::JSON->'$.prediction.id'))"
            )
            annotations = con.sql(
                f"""
                SELECT a.* REPLACE (
                    {literal(prefix)} || a.annotation_id AS annotation_id,
                    CASE WHEN a.extra IS NULL THEN NULL ELSE ({cleaned})::VARCHAR END AS extra)
                FROM ls_anns a WHERE a.kind = 'annotation'
                """
            ).to_arrow_table()
            new_tasks = con.sql(
                """
                SELECT t.* REPLACE (
                    json_object('data', t.data::JSON->'$.data', 'meta', t.data::JSON->'$.meta')::VARCHAR AS data)
                FROM ls_tasks t ANTI JOIN base_tasks b USING (task_id)
                """
            ).to_arrow_table()
        finally:
            for name in ("ls_tasks", "ls_anns", "base_tasks"):
                con.unregister(name)
    # annotations point at Label Studio task ids until mapped
    annotations = annotations.set_column(
        annotations.schema.get_field_index("task_id"),
        "task_id",
        mapped(annotations.column("task_id")),
    )
    ls_annotation_ids = pulled.annotations.filter(
        pc.equal(pulled.annotations.column("kind"), "annotation")
    ).column("annotation_id")
    regions = pulled.regions.filter(
        _is_in(pulled.regions.column("annotation_id"), ls_annotation_ids.to_pylist())
    )
    regions = regions.set_column(
        0, "annotation_id", pc.binary_join_element_wise(prefix, regions.column("annotation_id"), "")
    )
    pulled_ids = annotations.column("annotation_id").to_pylist()
    replaced = sorted(set(pulled_ids) | set(link.annotations))
    keep_annotations = base.annotations.filter(
        pc.invert(_is_in(base.annotations.column("annotation_id"), replaced))
    )
    keep_regions = base.regions.filter(
        pc.invert(_is_in(base.regions.column("annotation_id"), replaced))
    )
    labels = _merged_labels(base.labels, pulled.labels, regions)
    state = Tables(
        tasks=pa.concat_tables([base.tasks, new_tasks.cast(base.tasks.schema)]),
        annotations=pa.concat_tables([keep_annotations, annotations.cast(base.annotations.schema)]),
        regions=pa.concat_tables([keep_regions, regions.cast(base.regions.schema)]),
        labels=labels,
        metadata=base.metadata,
    )
    link_tasks = dict(link.tasks)
    for ls_id, task_id in zip(
        ls_task_ids.to_pylist(), mapped(ls_task_ids).to_pylist(), strict=True
    ):
        link_tasks.setdefault(task_id, int(ls_id))
    counts = {
        "annotations": annotations.num_rows,
        "regions": regions.num_rows,
        "tasks": new_tasks.num_rows,
    }
    return state, link_tasks, sorted(pulled_ids), counts


def _merged_labels(base: pa.Table, pulled: pa.Table, regions: pa.Table) -> pa.Table:
    """The base label set, plus labels Label Studio knows that it lacks (numbered after the
    last: adding a label never renumbers the others)."""
    have = set(base.column("label").to_pylist())
    wanted: list[str] = []
    used = sorted(set(pc.drop_null(regions.column("label")).to_pylist()))
    for label in pulled.column("label").to_pylist() + used:
        if label not in have:
            have.add(label)
            wanted.append(label)
    if not wanted:
        return base
    ids = pc.drop_null(base.column("label_id"))
    start = (pc.max(ids).as_py() + 1) if len(ids) else 0
    by_label = {row["label"]: row for row in pulled.to_pylist()}
    rows = []
    for offset, label in enumerate(wanted):
        row = dict(by_label.get(label, {"label": label}))
        row["label_id"] = start + offset
        rows.append(row)
    added = pa.Table.from_pylist(rows, schema=base.schema)
    return pa.concat_tables([base, added])


# ----------------------------------------------------------------------------- status


def status(
    dataset: Dataset,
    *,
    url: str,
    token: str,
    project: str | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Labeled and unlabeled task counts on the server next to those of the latest version
    (ZenML's pair), with the project's annotation and prediction counts."""
    client, title, found = _existing_project(dataset, url, token, project, timeout)
    link = _load_link(dataset, client.url, found)
    total = int(found.get("task_number") or 0)
    labeled = int(found.get("num_tasks_with_annotations") or 0)
    record: dict[str, Any] = {
        "url": client.url,
        "project": title,
        "project_id": int(found["id"]),
        "server_task_count": total,
        "server_labeled_task_count": labeled,
        "server_unlabeled_task_count": total - labeled,
        "server_annotation_count": int(found.get("total_annotations_number") or 0),
        "server_skipped_annotation_count": int(found.get("skipped_annotations_number") or 0),
        "server_prediction_count": int(found.get("total_predictions_number") or 0),
        "linked_task_count": len(link.tasks),
        "version": None,
        "task_count": 0,
        "labeled_task_count": 0,
        "unlabeled_task_count": 0,
    }
    latest = dataset.latest
    if latest is not None:
        stats = latest.stats()
        record["version"] = latest.number
        for key in ("task_count", "labeled_task_count", "unlabeled_task_count"):
            record[key] = stats[key]
    return record
