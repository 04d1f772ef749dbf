"""The Label Studio loop against a real server: configs, push, label, pull, diff, status.

Skip locally with ``pytest -m 'not label_studio'``; CI runs them.
"""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from label_studio_server import USER

import annostore
from annostore.cli import cli
from annostore.labelstudio import pull, push, status

pytestmark = pytest.mark.label_studio

LABELS = ["cat", "kid's toy", "a<b", "R&D", 'say "hi"', "café 猫"]


def _dataset(store: annostore.Store, name: str) -> annostore.Dataset:
    """Four images; a model predicted a box on two of them; nobody has labeled anything."""
    tasks = [
        {"task_id": f"img{i}", "uri": f"http://images.invalid/{i}.jpg", "width": 640, "height": 480}
        for i in range(4)
    ]
    predictions = [
        {
            "annotation_id": f"pred{i}",
            "task_id": f"img{i}",
            "kind": "prediction",
            "model_version": "yolo-v1",
            "score": 0.8,
        }
        for i in range(2)
    ]
    regions = [
        {
            "annotation_id": f"pred{i}",
            "region_id": f"p{i}",
            "type": "bbox",
            "label": "cat" if i == 0 else "kid's toy",
            "x": 0.125,
            "y": 0.25,
            "w": 0.5,
            "h": 0.25,
            "score": 0.75,
        }
        for i in range(2)
    ]
    labels = [{"label": name, "label_id": n} for n, name in enumerate(LABELS)]
    ds = store.create_dataset(name)
    ds.commit(
        annostore.Tables.from_pylist(
            tasks=tasks, annotations=predictions, regions=regions, labels=labels
        ),
        message="predictions of yolo-v1",
    )
    return ds


def _box(region_id: str, label: str, x: float, y: float, w: float, h: float) -> dict:
    return {
        "id": region_id,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 640,
        "original_height": 480,
        "value": {
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "rotation": 0,
            "rectanglelabels": [label],
        },
    }


@pytest.fixture
def project_name() -> str:
    return f"annostore {uuid.uuid4().hex[:10]}"


def test_every_generated_config_is_accepted_by_the_server(label_studio):
    for task in annostore.TASK_TYPES:
        config = annostore.label_config(task, LABELS)
        answer = label_studio.call(
            "POST", "/api/projects/", {"title": f"config {task}", "label_config": config}
        )
        parsed = answer["parsed_label_config"]
        listed = sorted(
            {label for control in parsed.values() for label in control.get("labels", [])}
        )
        assert listed == sorted(LABELS), task


def test_push_label_pull_diff_and_pull_again(label_studio, tmp_path, project_name):
    store = annostore.open(str(tmp_path / "store"))
    ds = _dataset(store, "pets")
    server = {"url": label_studio.url, "token": label_studio.token, "project": project_name}

    pushed = push(ds, **server)
    assert (pushed.project_created, pushed.tasks_pushed, pushed.predictions_pushed) == (True, 4, 2)
    project = label_studio.call("GET", f"/api/projects/{pushed.project_id}/")
    assert (project["task_number"], project["total_predictions_number"]) == (4, 2)
    # the pre-annotation reached the task with its region id, label and geometry in percent
    by_image = {t["data"]["image"]: t for t in label_studio.tasks(pushed.project_id)}
    task0 = by_image["http://images.invalid/0.jpg"]
    [prediction] = label_studio.call("GET", f"/api/predictions/?task={task0['id']}")
    assert prediction["model_version"] == "yolo-v1"
    assert prediction["result"][0]["id"] == "p0"
    assert prediction["result"][0]["value"]["x"] == pytest.approx(12.5)

    again = push(ds, **server)
    assert (again.project_created, again.tasks_pushed, again.predictions_pushed) == (False, 0, 0)
    assert label_studio.call("GET", f"/api/projects/{pushed.project_id}/")["task_number"] == 4

    # a labeler accepts the prediction on img0 with the box moved, labels img2 with two boxes
    label_studio.call(
        "POST",
        f"/api/tasks/{task0['id']}/annotations/",
        {"result": [_box("p0", "cat", 25.0, 25.0, 50.0, 25.0)], "lead_time": 4.5},
    )
    task2 = by_image["http://images.invalid/2.jpg"]
    label_studio.call(
        "POST",
        f"/api/tasks/{task2['id']}/annotations/",
        {
            "result": [
                _box("h1", "a<b", 0.0, 0.0, 10.0, 10.0),
                _box("h2", "R&D", 50.0, 50.0, 25.0, 50.0),
            ]
        },
    )

    result = pull(ds, **server, message="round 1 labels")
    assert result.new_version and result.version == 2
    assert (result.annotations_pulled, result.regions_pulled, result.tasks_added) == (2, 3, 0)
    v2 = ds.version(2)
    assert v2.message == "round 1 labels"
    rows = v2.sql(
        "SELECT a.task_id, r.region_id, r.label, r.x, r.y, r.w, r.h, a.lead_time "
        "FROM regions r JOIN annotations a USING (annotation_id) "
        "WHERE a.kind = 'annotation' ORDER BY a.task_id, r.region_id"
    ).to_pylist()
    assert [(r["task_id"], r["region_id"], r["label"]) for r in rows] == [
        ("img0", "p0", "cat"),
        ("img2", "h1", "a<b"),
        ("img2", "h2", "R&D"),
    ]
    assert (rows[0]["x"], rows[0]["y"], rows[0]["w"], rows[0]["h"]) == (0.25, 0.25, 0.5, 0.25)
    assert rows[0]["lead_time"] == 4.5
    annotators = v2.sql("SELECT DISTINCT annotator FROM annotations WHERE kind = 'annotation'")
    assert annotators.column("annotator").to_pylist() == [USER]
    # tasks and predictions are still the dataset's own
    assert v2.tables.tasks.equals(ds.version(1).tables.tasks)
    assert v2.sql(
        "SELECT count(*) AS n FROM annotations WHERE kind = 'prediction'"
    ).to_pylist() == [{"n": 2}]

    diff = ds.diff(1, 2).to_dict()
    assert diff["regions_added"] == 3 and diff["regions_removed"] == 0
    assert diff["annotations_added"] == 2
    assert diff["tasks_newly_labeled"] == 2
    assert diff["regions_unchanged"] == 2

    # nothing new in Label Studio: no new version
    same = pull(ds, **server)
    assert not same.new_version and same.version == 2 and len(ds.log()) == 2

    # the labeler deletes the img2 annotation: the next pull removes it
    annotation_id = label_studio.call("GET", f"/api/tasks/{task2['id']}/annotations/")[0]["id"]
    label_studio.call("DELETE", f"/api/annotations/{annotation_id}/")
    removed = pull(ds, **server)
    assert removed.new_version
    assert ds.diff(2, removed.version).to_dict()["regions_removed"] == 2

    counts = status(ds, **server)
    assert counts["server_task_count"] == 4 and counts["server_labeled_task_count"] == 1
    assert counts["server_unlabeled_task_count"] == 3
    assert (counts["task_count"], counts["labeled_task_count"]) == (4, 1)


def test_pushing_a_later_version_sends_only_new_tasks_and_predictions(
    label_studio, tmp_path, project_name
):
    store = annostore.open(str(tmp_path / "store"))
    ds = _dataset(store, "pets")
    server = {"url": label_studio.url, "token": label_studio.token, "project": project_name}
    first = push(ds, **server)
    tables = ds.version(1).tables
    more = annostore.Tables.from_pylist(
        tasks=[
            *tables.tasks.to_pylist(),
            {"task_id": "img9", "uri": "http://images.invalid/9.jpg", "width": 640, "height": 480},
        ],
        annotations=[
            *tables.annotations.to_pylist(),
            {
                "annotation_id": "pred2-v2",
                "task_id": "img2",
                "kind": "prediction",
                "model_version": "yolo-v2",
            },
            {
                "annotation_id": "pred9-v2",
                "task_id": "img9",
                "kind": "prediction",
                "model_version": "yolo-v2",
            },
        ],
        regions=[
            *tables.regions.to_pylist(),
            {
                "annotation_id": "pred2-v2",
                "region_id": "q2",
                "type": "bbox",
                "label": "cat",
                "x": 0.5,
                "y": 0.5,
                "w": 0.25,
                "h": 0.25,
            },
            {
                "annotation_id": "pred9-v2",
                "region_id": "q9",
                "type": "bbox",
                "label": "cat",
                "x": 0.0,
                "y": 0.0,
                "w": 0.5,
                "h": 0.5,
            },
        ],
        labels=tables.labels.to_pylist(),
    )
    ds.commit(more, message="yolo-v2")
    second = push(ds, **server)
    assert (second.tasks_pushed, second.tasks_already_there, second.predictions_pushed) == (1, 4, 2)
    project = label_studio.call("GET", f"/api/projects/{first.project_id}/")
    assert (project["task_number"], project["total_predictions_number"]) == (5, 4)


def test_cli_push_pull_status_and_errors(label_studio, tmp_path, project_name):
    store_url = str(tmp_path / "store")
    _dataset(annostore.open(store_url), "pets")
    runner = CliRunner()
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}

    def run(*args: str, **extra_env: str):
        return runner.invoke(cli, ["--store", store_url, *args], env={**env, **extra_env})

    pushed = run("ls", "push", "pets", "--project", project_name, "--json")
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["tasks_pushed"] == 4
    assert label_studio.token not in pushed.output

    pulled = run("ls", "pull", "pets", "--project", project_name, "--json")
    assert pulled.exit_code == 0, pulled.output
    assert json.loads(pulled.stdout)["new_version"] is False  # nobody has labeled yet
    assert "no new version" in pulled.stderr

    state = run("ls", "status", "pets", "--project", project_name, "--json")
    assert state.exit_code == 0
    assert json.loads(state.stdout)["server_unlabeled_task_count"] == 4

    wrong = run("ls", "pull", "pets", "--project", project_name, LABEL_STUDIO_API_KEY="0" * 40)
    assert wrong.exit_code == 1
    assert (
        wrong.stderr.startswith("error: Label Studio at")
        and "refused the API token" in wrong.stderr
    )
    assert "Traceback" not in wrong.output and "0" * 40 not in wrong.output
    assert len(annostore.open(store_url).dataset("pets").log()) == 1

    missing = run("ls", "pull", "pets", "--project", "no such project here")
    assert missing.exit_code == 1 and "no project titled 'no such project here'" in missing.stderr


def test_pull_from_a_project_made_in_label_studio_creates_the_dataset(
    label_studio, tmp_path, project_name
):
    config = annostore.label_config("object-detection", ["car", "bus"])
    made = label_studio.call(
        "POST", "/api/projects/", {"title": project_name, "label_config": config}
    )
    ids = label_studio.call(
        "POST",
        f"/api/projects/{made['id']}/import?return_task_ids=true",
        [{"image": "http://images.invalid/street.jpg"}],
    )["task_ids"]
    label_studio.call(
        "POST", f"/api/tasks/{ids[0]}/annotations/", {"result": [_box("b1", "bus", 10, 10, 20, 20)]}
    )
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "--store",
            str(tmp_path / "store"),
            "ls",
            "pull",
            "street",
            "--project",
            project_name,
            "--url",
            label_studio.url,
            "--token",
            label_studio.token,
        ],
    )
    assert result.exit_code == 0, result.output
    version = annostore.open(str(tmp_path / "store")).dataset("street").version("latest")
    task = version.tables.tasks.to_pylist()[0]
    assert task["task_id"] == f"ls:{made['id']}:{ids[0]}"
    assert task["uri"] == "http://images.invalid/street.jpg"
    assert version.tables.regions.column("label").to_pylist() == ["bus"]
    labels = version.tables.labels.sort_by("label_id").select(["label", "label_id"]).to_pylist()
    assert labels == [{"label": "car", "label_id": 0}, {"label": "bus", "label_id": 1}]


def test_a_text_dataset_goes_round_the_loop_with_spans(label_studio, tmp_path, project_name):
    """Named entities: the generated config reads the pushed text, and spans come back as
    code-point offsets (the text has a character outside the BMP before the entity)."""
    text = "🙂 Alice met Bob in Paris."
    ds = annostore.open(str(tmp_path / "store")).create_dataset("docs")
    ds.commit(
        annostore.Tables.from_pylist(
            tasks=[{"task_id": "doc1", "text": text}],
            annotations=[
                {
                    "annotation_id": "p1",
                    "task_id": "doc1",
                    "kind": "prediction",
                    "model_version": "ner-1",
                }
            ],
            regions=[
                {
                    "annotation_id": "p1",
                    "region_id": "s1",
                    "type": "span",
                    "label": "PER",
                    "start": 2,
                    "end": 7,
                    "value": "Alice",
                }
            ],
            labels=[{"label": "PER", "label_id": 0}, {"label": "LOC", "label_id": 1}],
        )
    )
    server = {"url": label_studio.url, "token": label_studio.token, "project": project_name}
    pushed = push(ds, **server)
    [task] = label_studio.tasks(pushed.project_id)
    assert task["data"]["text"] == text
    [prediction] = label_studio.call("GET", f"/api/predictions/?task={task['id']}")
    # Label Studio counts UTF-16 units: the emoji is two
    assert prediction["result"][0]["value"]["start"] == 3
    label_studio.call(
        "POST",
        f"/api/tasks/{task['id']}/annotations/",
        {
            "result": [
                {
                    "id": "e1",
                    "from_name": "label",
                    "to_name": "text",
                    "type": "labels",
                    "value": {"start": 20, "end": 25, "text": "Paris", "labels": ["LOC"]},
                }
            ]
        },
    )
    result = pull(ds, **server)
    assert result.new_version
    spans = ds.version(result.version).sql(
        'SELECT r.label, r.start, r."end", r.value FROM regions r JOIN annotations a '
        "USING (annotation_id) WHERE a.kind = 'annotation'"
    )
    [span] = spans.to_pylist()
    assert span == {"label": "LOC", "start": 19, "end": 24, "value": "Paris"}
    assert text[span["start"] : span["end"]] == "Paris"
