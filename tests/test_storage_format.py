"""The documented storage format is enough for another engine to read a version."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
from helpers import boxes

import annostore

DOC = Path(__file__).resolve().parent.parent / "docs" / "storage-format.md"


def _documented_reader() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_documented_duckdb_reader_reproduces_every_version(tmp_path):
    store = annostore.open(str(tmp_path / ".annostore"), auto_compact=False)
    ds = store.create_dataset("pets")
    ds.commit(boxes(30))
    ds.commit(boxes(40, label="dog"))  # updates and inserts
    ds.commit(boxes(30))  # a revert: the first fragment is listed again
    ds.commit_changes(deletes={"regions": [("a00003", "r1")]})
    code = _documented_reader()
    for version in ds.log():
        source = code.replace(
            '".annostore/datasets/pets"', repr(str(tmp_path / ".annostore/datasets/pets"))
        )
        source = source.replace("0000000003", f"{version.number:010d}")
        namespace: dict = {}
        exec(compile(source, str(DOC), "exec"), namespace)
        regions: pa.Table = namespace["regions"]
        namespace["con"].close()
        order = [("annotation_id", "ascending"), ("region_id", "ascending")]
        expected = version.tables.regions.sort_by(order)
        assert regions.sort_by(order).cast(expected.schema).equals(expected), (
            f"version {version.number}"
        )


def test_sql_views_read_every_version_as_its_tables(tmp_path):
    """The views annostore's own SQL uses agree with the tables, a revert included (the same
    fragment listed twice, with two seqs)."""
    ds = annostore.open(str(tmp_path / "store"), auto_compact=False).create_dataset("pets")
    ds.commit(boxes(30))
    ds.commit(boxes(40, label="dog"))
    ds.commit(boxes(30))  # a revert
    ds.commit_changes(deletes={"regions": [("a00003", "r1")]})
    order = [("annotation_id", "ascending"), ("region_id", "ascending")]
    for version in ds.log():
        expected = version.tables.regions.sort_by(order)
        columns = ", ".join(f'"{name}"' for name in expected.column_names)
        seen = version.sql(f"SELECT {columns} FROM regions").sort_by(order)
        assert seen.cast(expected.schema).equals(expected), f"version {version.number}"


def test_fragments_carry_key_statistics_for_readers_that_prune(tmp_path):
    """As docs/storage-format.md says: each fragment's key columns have min/max
    statistics, those of the keys it holds (what another engine prunes by)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    store = annostore.open(str(tmp_path / "s"))
    ds = store.create_dataset("pets")
    tables = annostore.Tables.from_pylist(
        tasks=[{"task_id": f"t{i}"} for i in range(3)],
        annotations=[{"annotation_id": f"a{i}", "task_id": f"t{i}"} for i in range(3)],
        regions=[
            {"annotation_id": f"a{i}", "region_id": f"r{j}", "type": "bbox", "label": "cat"}
            for i in range(3)
            for j in range(2)
        ],
    )
    manifest = ds.commit(tables).manifest
    fragment = manifest.tables["regions"].fragments[0]
    metadata = pq.ParquetFile(tmp_path / "s" / "datasets" / "pets" / fragment.path).metadata
    assert metadata.num_row_groups == 1
    row_group = metadata.row_group(0)
    columns = {
        row_group.column(i).path_in_schema: row_group.column(i)
        for i in range(row_group.num_columns)
    }
    rows = pq.read_table(tmp_path / "s" / "datasets" / "pets" / fragment.path)
    for key in ("annotation_id", "region_id"):
        statistics = columns[key].statistics
        assert statistics.has_min_max
        expected = pc.min_max(rows.column(key))
        assert (statistics.min, statistics.max) == (
            expected["min"].as_py(),
            expected["max"].as_py(),
        )
