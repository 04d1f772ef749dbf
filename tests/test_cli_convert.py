"""convert, formats, import and export on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from annostore.cli import cli


@pytest.fixture
def run(tmp_path):
    store = str(tmp_path / "store")

    def invoke(*args: str, expect: int = 0):
        result = CliRunner().invoke(cli, ["--store", store, *args], catch_exceptions=False)
        assert result.exit_code == expect, (result.output, result.stderr)
        return result

    return invoke


@pytest.fixture
def instances(corpus: Path) -> str:
    return str(corpus / "datumaro/coco_dataset/coco_instances/annotations/instances_val.json")


def test_formats_lists_every_format_with_what_it_holds(run):
    rows = json.loads(run("formats", "--json").stdout)
    coco = next(r for r in rows if r["format"] == "coco")
    assert coco["read"] and coco["write"] and "polygon" in coco["holds"]


def test_convert_prints_the_report_and_writes_the_target(run, instances, tmp_path):
    target = tmp_path / "out.json"
    report = json.loads(run("convert", instances, str(target), "--to", "coco", "--json").stdout)
    assert report["counts"]["read regions"] == 2 and report["lossless"]
    assert len(json.loads(target.read_text())["annotations"]) == 2
    # the target exists now: refusing to overwrite is an error, with one line and exit 1
    result = run("convert", instances, str(target), "--to", "coco", expect=1)
    # refused before reading anything: one error line, nothing else
    assert result.stderr.startswith("error: ") and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    run("convert", instances, str(target), "--to", "coco", "--overwrite")


def test_convert_strict_fails_and_writes_nothing(run, tmp_path):
    source = tmp_path / "in.json"
    source.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "width": 10, "height": 10}],
                "categories": [{"id": 1, "name": "a"}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
                    {"id": 2, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]},
                ],
            }
        )
    )
    result = run("convert", str(source), str(tmp_path / "out.json"), "--to", "coco", expect=1)
    assert "in.json:annotations[1]: category_id 9 matches no category" in result.stderr
    result = run(
        "convert", str(source), str(tmp_path / "out.json"), "--to", "coco", "--errors", "skip"
    )
    assert "skipped: " in result.stderr and (tmp_path / "out.json").exists()
    (tmp_path / "out.json").unlink()
    result = run(
        "convert",
        str(source),
        str(tmp_path / "o.json"),
        "--to",
        "coco",
        "--errors",
        "skip",
        "--strict",
        expect=1,
    )
    assert "would lose data" in result.stderr and not (tmp_path / "o.json").exists()


def test_usage_mistakes_exit_2(run, instances, tmp_path):
    assert run("convert", instances, str(tmp_path / "x.json"), expect=2)
    run("convert", instances, str(tmp_path / "x.json"), "--to", "coco", "-w", "nonsense", expect=2)
    run("convert", instances, str(tmp_path / "x.json"), "--to", "coco", "-w", "speed=9", expect=2)


def test_unknown_format_lists_the_known_ones(run, instances, tmp_path):
    result = run("convert", instances, str(tmp_path / "x.json"), "--to", "nope", expect=1)
    assert "unknown format 'nope'" in result.stderr and "coco" in result.stderr


def test_import_makes_a_version_once_and_export_writes_it_back(run, instances, tmp_path):
    first = json.loads(run("import", "pets", instances, "-m", "round 1", "--json").stdout)
    assert first["counts"]["version"] == 1
    again = json.loads(run("import", "pets", instances, "--json").stdout)
    assert again["counts"]["version"] == 1 and any("no change" in n for n in again["notes"])
    log = json.loads(run("log", "pets", "--json").stdout)
    assert [v["message"] for v in log] == ["round 1"]
    run("export", "pets@1", str(tmp_path / "back.json"), "--to", "coco")
    exported = json.loads((tmp_path / "back.json").read_text())
    original = json.loads(Path(instances).read_text())
    assert exported["info"] == original["info"] and exported["licenses"] == original["licenses"]
    assert sorted(a["id"] for a in exported["annotations"]) == [1, 2]


def test_duckdb_draws_no_progress_bar_on_the_cli_stderr():
    """Long conversions must not fill stderr (the CLI's message channel) with DuckDB bars."""
    from annostore._sql import connection

    with connection() as con:
        assert con.sql("SELECT current_setting('enable_progress_bar')").fetchall() == [(False,)]
