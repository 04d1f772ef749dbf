"""The command line, driven through click's CliRunner and parsed from its JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import boxes

import annostore
from annostore.cli import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def run(tmp_path):
    store = str(tmp_path / "store")

    def invoke(*args: str, expect: int = 0):
        result = CliRunner().invoke(cli, ["--store", store, *args], catch_exceptions=False)
        assert result.exit_code == expect, (result.output, result.stderr)
        return result

    invoke.store = store
    return invoke


def test_demo_commits_two_versions_and_prints_the_log(run):
    result = run("demo")
    assert "round 2: review" in result.stdout and "round 1: first labeling pass" in result.stdout
    assert "committed demo@2" in result.stderr
    assert "demo@1: 50 of 60 tasks labeled" in result.stdout
    assert "demo@2: 50 of 60 tasks labeled (12 background), 77 regions" in result.stdout
    assert "diff demo@1 -> @2: regions +18 -4 ~11 (48 unchanged)" in result.stdout
    log = json.loads(run("log", "demo", "--json").stdout)
    assert [entry["number"] for entry in log] == [2, 1]
    assert log[1]["tags"] == ["round-1"]
    assert log[0]["changes"]["labels"]["inserted"] == 1
    # Running it again replaces the demo dataset and gives the same versions.
    run("demo")
    again = json.loads(run("log", "demo", "--json").stdout)
    assert [e["counts"] for e in again] == [e["counts"] for e in log]


def test_log_json_has_the_documented_fields(run):
    ds = annostore.open(run.store).create_dataset("pets")
    ds.commit(boxes(3), message="first", author="ana")
    ds.commit(boxes(4), message="second", author="ben")
    entries = json.loads(run("log", "pets", "--format", "json").stdout)
    assert {"number", "id", "parent", "message", "author", "created_at", "counts"} <= set(
        entries[0]
    )
    assert [(e["number"], e["parent"], e["author"]) for e in entries] == [
        (2, 1, "ben"),
        (1, None, "ana"),
    ]
    assert entries[0]["counts"]["tasks"] == 4
    lines = run("log", "pets", "--format", "jsonl").stdout.strip().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["second", "first"]
    csv_text = run("log", "pets", "--format", "csv").stdout.splitlines()
    assert csv_text[0].startswith("number,id,created_at") and csv_text[1].startswith("2,")
    table = run("log", "pets").stdout
    assert "second" in table and "first" in table


def test_show_accepts_every_kind_of_ref(run):
    ds = annostore.open(run.store).create_dataset("pets")
    v1 = ds.commit(boxes(3), message="first")
    ds.commit(boxes(5), message="second")
    run("tag", "pets", "gold", "1")
    for spec in ("pets@1", "pets@gold", f"pets@{v1.id[:8]}"):
        shown = json.loads(run("show", spec, "--json").stdout)
        assert shown["number"] == 1 and shown["id"] == v1.id and shown["tags"] == ["gold"]
    assert json.loads(run("show", "pets", "--json").stdout)["number"] == 2
    assert "regions +4 ~0 -0" in run("show", "pets").stdout


def test_tags_and_tag_moves(run):
    ds = annostore.open(run.store).create_dataset("pets")
    ds.commit(boxes(1))
    ds.commit(boxes(2))
    run("tag", "pets", "gold")
    assert json.loads(run("tags", "pets", "--json").stdout) == [{"tag": "gold", "version": 2}]
    result = run("tag", "pets", "gold", "1", expect=1)
    assert result.stderr.startswith("error: tag 'gold' already names version 2")
    run("tag", "pets", "gold", "1", "--force")
    assert json.loads(run("tags", "pets", "--json").stdout) == [{"tag": "gold", "version": 1}]


def test_datasets_and_create(run):
    run("create", "pets")
    run("create", "birds")
    annostore.open(run.store).dataset("pets").commit(boxes(2))
    listed = json.loads(run("datasets", "--json").stdout)
    assert [(d["dataset"], d["versions"], d["tasks"]) for d in listed] == [
        ("birds", 0, 0),
        ("pets", 1, 2),
    ]
    assert (
        run("create", "pets", expect=1).stderr
        == f"error: dataset 'pets' already exists in {run.store}\n"
    )
    run("create", "pets", "--exist-ok")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "error: no dataset 'nope'"),
        (["show", "pets@9"], "error: dataset 'pets' has no version 9"),
        (["create", "../escape"], "error: dataset name '../escape' is not allowed"),
        (["tag", "pets", "12", "1"], "error: tag name '12' is not allowed"),
    ],
)
def test_mistakes_are_one_line_errors_with_exit_1(run, args, message):
    annostore.open(run.store).create_dataset("pets").commit(boxes(1))
    result = run(*args, expect=1)
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(run):
    with pytest.raises(annostore.NotFoundError):
        CliRunner().invoke(
            cli, ["--store", run.store, "--debug", "show", "nope"], catch_exceptions=False
        )


def test_usage_mistakes_exit_2(run):
    assert run("frobnicate", expect=2).stderr.startswith("Usage:")
    assert run("log", expect=2).stderr.startswith("Usage:")
    assert run("log", "x", "--format", "xml", expect=2).exit_code == 2


def test_gc_and_verify(run):
    store = annostore.open(run.store)
    store.create_dataset("pets").commit(boxes(3))
    store._storage.write_whole("datasets/pets/objects/" + "f" * 64 + ".parquet", b"orphan")
    assert json.loads(run("gc", "--json").stdout)["kept_young"] == 1
    dry = json.loads(run("gc", "--grace", "0", "--dry-run", "--json").stdout)
    assert dry["removed"] == 1 and store._storage.exists(
        "datasets/pets/objects/" + "f" * 64 + ".parquet"
    )
    assert json.loads(run("gc", "--grace", "0", "--json").stdout)["removed"] == 1
    report = json.loads(run("verify", "--json").stdout)
    assert report["ok"] is True and report["versions"] == 1 and report["files"] > 0
    fragment = store.dataset("pets").latest.manifest.tables["tasks"].fragments[0]
    path = Path(run.store) / "datasets" / "pets" / fragment.path
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    bad = run("verify", "--json", expect=1)
    problems = json.loads(bad.stdout)["problems"]
    assert problems[0]["path"].endswith(fragment.path) and "corrupted" in problems[0]["problem"]
    assert "1 problem(s) found" in bad.stderr


def test_store_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOSTORE_STORE", str(tmp_path / "env-store"))
    result = CliRunner().invoke(cli, ["create", "pets"])
    assert result.exit_code == 0
    assert annostore.open(str(tmp_path / "env-store")).datasets() == ["pets"]


def test_every_command_has_help_and_is_documented():
    reference = (DOCS / "cli.md").read_text(encoding="utf-8")
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"
        assert f"annostore {name}" in reference, f"{name} is not in docs/cli.md"
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.stdout
