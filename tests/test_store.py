"""The store contract: every test runs on local disk, memory:// and a real S3 API (moto)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from helpers import boxes

import annostore
from annostore import _commit
from annostore._fragments import clear_cache
from annostore.schemas import SCHEMA_VERSION


def _version_files(store: annostore.Store, name: str) -> list[str]:
    return store._storage.list(f"datasets/{name}/versions")


def test_commit_then_read_returns_the_same_tables(store):
    ds = store.create_dataset("pets")
    tables = boxes(20)
    version = ds.commit(tables, message="round 1", author="ana")
    clear_cache()
    again = store.dataset("pets").version(1)
    assert again.tables == tables
    assert (again.number, again.parent, again.message, again.author) == (1, None, "round 1", "ana")
    assert again.counts == {"tasks": 20, "annotations": 20, "regions": 40, "labels": 1}
    assert again.id == version.id and len(again.id) == 64
    assert again.manifest.schema_version == SCHEMA_VERSION


def test_committing_an_identical_state_makes_no_new_version(store):
    ds = store.create_dataset("pets")
    first = ds.commit(boxes(5))
    same = ds.commit(boxes(5), message="nothing changed")
    assert same.number == first.number == 1
    assert len(_version_files(store, "pets")) == 1


def _by_key(regions: pa.Table) -> pa.Table:
    return regions.sort_by([("annotation_id", "ascending"), ("region_id", "ascending")])


def test_a_state_with_as_many_rows_as_its_base_is_compared_row_for_row(store, monkeypatch):
    """A table with its base's row count is first compared row for row in key order (the
    same rows make no change without the join); one edited value, reordered rows, and a
    base with tombstones each still give exactly the right change."""
    ds = store.create_dataset("pets")
    ds.commit(boxes(50))
    joins = []
    real = _commit._compare_full_state
    monkeypatch.setattr(_commit, "_compare_full_state", lambda *a: joins.append(a[1]) or real(*a))

    assert ds.commit(boxes(50)).number == 1  # new objects, same rows
    assert joins == []

    edited = boxes(50)
    labels = edited.regions.column("label").to_pylist()
    labels[17] = "dog"  # same row count, one value
    regions = edited.regions.set_column(
        edited.regions.schema.get_field_index("label"), "label", pa.array(labels)
    )
    v2 = ds.commit(annostore.Tables(edited.tasks, edited.annotations, regions, edited.labels))
    assert v2.changes["regions"] == {"inserted": 0, "updated": 1, "deleted": 0}
    assert joins == ["regions"]
    assert _by_key(v2.tables.regions) == _by_key(regions)

    shuffled = v2.tables.regions.take(pa.array(list(range(99, -1, -1))))
    again = ds.commit(annostore.Tables(edited.tasks, edited.annotations, shuffled, edited.labels))
    assert again.number == 2  # the same rows in another order: no change

    # v3 relabels one region: a tombstone over v1's files. The same count of rows is then
    # compared by the join (the files no longer hold exactly the live rows), and right.
    relabeled = regions.slice(5, 1).set_column(
        regions.schema.get_field_index("label"), "label", pa.array(["bird"])
    )
    ds.commit_changes(upserts={"regions": relabeled})
    joins.clear()
    back = ds.commit(annostore.Tables(edited.tasks, edited.annotations, regions, edited.labels))
    assert back.changes["regions"] == {"inserted": 0, "updated": 1, "deleted": 0}
    assert joins == ["regions"]
    assert _by_key(back.tables.regions) == _by_key(regions)


def test_a_small_change_writes_only_the_changed_rows(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(200))
    changed = boxes(200)
    regions = changed.regions.to_pylist()
    regions[3]["label"] = "dog"  # update
    del regions[10]  # delete
    regions.append(
        {"annotation_id": "a00007", "region_id": "r9", "type": "bbox", "x": 0.5}
    )  # insert
    v2 = ds.commit(
        annostore.Tables(
            changed.tasks,
            changed.annotations,
            pa.Table.from_pylist(regions, changed.regions.schema),
            changed.labels,
        )
    )
    assert v2.changes["regions"] == {"inserted": 1, "updated": 1, "deleted": 1}
    assert v2.changes["tasks"] == {"inserted": 0, "updated": 0, "deleted": 0}
    new_fragments = [f for f in v2.manifest.tables["regions"].fragments if f.seq == 2]
    assert sum(f.rows for f in new_fragments) == 2
    assert [t.rows for t in v2.manifest.tables["regions"].tombstones] == [2]
    changeset = v2.changeset("regions").to_pylist()
    assert sorted((r["annotation_id"], r["region_id"], r["op"]) for r in changeset) == [
        ("a00001", "r1", "U"),
        ("a00005", "r0", "D"),
        ("a00007", "r9", "I"),
    ]
    assert store.dataset("pets").version(2).tables.regions.num_rows == 400


def test_old_versions_keep_their_content(store):
    ds = store.create_dataset("pets")
    states = [
        boxes(10, label="cat"),
        boxes(10, label="dog"),
        boxes(12, label="dog", shift=0.1),
        boxes(3),
    ]
    for state in states:
        ds.commit(state)
    clear_cache()
    for number, state in enumerate(states, start=1):
        assert ds.version(number).tables == state
    assert [v.number for v in ds.log()] == [4, 3, 2, 1]


def test_reverting_to_an_earlier_state_restores_it(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(8))
    ds.commit(boxes(2, label="dog"))
    v3 = ds.commit(boxes(8))
    assert v3.number == 3
    clear_cache()
    assert ds.version(3).tables == boxes(8)


def _spy_on_comparisons(monkeypatch) -> list[str]:
    """The names of the tables whose rows a commit hashes to compare them with its base
    (by any of its ways: row for row or by a join on the key)."""
    compared: list[str] = []
    real_hash = _commit.row_hash_expression
    monkeypatch.setattr(
        _commit,
        "row_hash_expression",
        lambda name, *rest: compared.append(name) or real_hash(name, *rest),
    )
    return compared


def _relabel_first(regions: pa.Table, label: str) -> pa.Table:
    return regions.set_column(
        regions.schema.get_field_index("label"),
        "label",
        pa.array([label, *regions.column("label").to_pylist()[1:]]),
    )


def test_editing_the_regions_of_a_read_version_commits_just_that_edit(store, monkeypatch):
    ds = store.create_dataset("pets")
    ds.commit(boxes(30))
    read = ds.version("latest").tables
    relabelled = _relabel_first(read.regions, "dog")
    compared = _spy_on_comparisons(monkeypatch)
    v2 = ds.commit(annostore.Tables(read.tasks, read.annotations, relabelled, read.labels))
    # The tables passed back as read are known unchanged: only the regions are compared.
    assert set(compared) == {"regions"}
    assert v2.changes["regions"] == {"inserted": 0, "updated": 1, "deleted": 0}
    clear_cache()
    again = store.dataset("pets").version(2).tables
    first = read.regions.slice(0, 1).select(["annotation_id", "region_id"]).to_pylist()[0]
    labels = {(r["annotation_id"], r["region_id"]): r["label"] for r in again.regions.to_pylist()}
    assert labels.pop((first["annotation_id"], first["region_id"])) == "dog"
    assert set(labels.values()) == {"cat"}
    assert again.tasks.equals(boxes(30).tasks)


def test_editing_the_regions_of_the_tables_just_committed_compares_only_them(store, monkeypatch):
    ds = store.create_dataset("pets")
    tables = boxes(30)
    ds.commit(tables)
    # after the first commit's own tables, a committed edit's tables are known too
    for round_number, label in enumerate(["dog", "bird"], start=2):
        compared = _spy_on_comparisons(monkeypatch)
        tables = annostore.Tables(
            tables.tasks, tables.annotations, _relabel_first(tables.regions, label), tables.labels
        )
        version = ds.commit(tables)
        assert set(compared) == {"regions"}
        assert (version.number, version.changes["regions"]["updated"]) == (round_number, 1)
        monkeypatch.undo()
    # the same objects once more: no new version, and nothing compared
    compared = _spy_on_comparisons(monkeypatch)
    assert ds.commit(annostore.Tables(**dict(tables))).number == 3
    assert compared == []
    clear_cache()
    again = store.dataset("pets").version(3).tables
    assert again == tables and sorted(set(again.regions.column("label").to_pylist())) == [
        "bird",
        "cat",
    ]


def test_tables_of_a_rebased_commit_are_compared_again(store, monkeypatch):
    ds = store.create_dataset("pets")
    ds.commit(boxes(4))
    theirs = store.dataset("pets")
    theirs.commit_changes(
        {"tasks": pa.Table.from_pylist([{"task_id": "t-theirs", "width": 5, "height": 5}])}
    )
    mine = boxes(4, label="dog")
    # based on version 1, it loses the race for version 2 and lands as version 3 on top of
    # the other writer's task: its tables are not what version 3 holds
    assert ds.commit(mine, base=1).number == 3
    assert store.dataset("pets").version(3).counts["tasks"] == 5
    compared = _spy_on_comparisons(monkeypatch)
    v4 = ds.commit(annostore.Tables(mine.tasks, mine.annotations, mine.regions, mine.labels))
    assert "tasks" in compared
    assert v4.changes["tasks"] == {"inserted": 0, "updated": 0, "deleted": 1}
    clear_cache()
    assert store.dataset("pets").version(4).tables == mine


def test_tables_read_from_an_older_version_revert_a_newer_one(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(6, label="cat"))
    old = ds.version(1).tables
    ds.commit(boxes(9, label="dog"))
    # Version 1's own table objects: the base (version 2) stores other rows, so they are
    # compared and committed like any other tables.
    v3 = ds.commit(annostore.Tables(old.tasks, old.annotations, old.regions, old.labels))
    assert v3.number == 3
    assert v3.changes["tasks"] == {"inserted": 0, "updated": 0, "deleted": 3}
    clear_cache()
    assert store.dataset("pets").version(3).tables == boxes(6, label="cat")


def test_first_commit_of_an_empty_state_is_version_one(store):
    ds = store.create_dataset("empty")
    version = ds.commit(annostore.Tables())
    assert version.number == 1
    assert version.counts == {"tasks": 0, "annotations": 0, "regions": 0, "labels": 0}
    assert ds.version("latest").tables == annostore.Tables()


def test_commit_changes_upserts_and_deletes(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(10))
    upserts = {
        "regions": pa.Table.from_pylist(
            [
                {
                    "annotation_id": "a00002",
                    "region_id": "r0",
                    "type": "bbox",
                    "label": "dog",
                    "x": 0.9,
                },
                {"annotation_id": "a00002", "region_id": "r7", "type": "class", "label": "indoor"},
            ]
        )
    }
    v2 = ds.commit_changes(
        upserts, deletes={"regions": [("a00003", "r1"), ("a00009", "nope")]}, message="fix"
    )
    assert v2.changes["regions"] == {"inserted": 1, "updated": 1, "deleted": 1}
    regions = {
        (r["annotation_id"], r["region_id"]): r for r in ds.version(2).tables.regions.to_pylist()
    }
    assert regions[("a00002", "r0")]["label"] == "dog"
    assert ("a00002", "r7") in regions and ("a00003", "r1") not in regions
    assert len(regions) == 20


def test_commit_changes_deleting_a_whole_task(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(4))
    version = ds.commit_changes(
        deletes={
            "tasks": ["t00001"],
            "annotations": ["a00001"],
            "regions": [("a00001", "r0"), ("a00001", "r1")],
        }
    )
    assert version.counts == {"tasks": 3, "annotations": 3, "regions": 6, "labels": 1}


@pytest.mark.parametrize(
    ("upserts", "deletes", "message"),
    [
        (
            {"regions": [{"annotation_id": "ghost", "region_id": "r0", "type": "bbox"}]},
            None,
            "annotations that do not exist",
        ),
        (
            {"annotations": [{"annotation_id": "a9", "task_id": "ghost"}]},
            None,
            "tasks that do not exist",
        ),
        (None, {"tasks": ["t00001"]}, "still pointed at by annotations"),
        (
            {"regions": [{"annotation_id": "a00001", "region_id": "r0", "type": "bbox"}]},
            {"regions": [("a00001", "r0")]},
            "both upserted and deleted",
        ),
    ],
)
def test_commit_changes_that_break_references_write_no_version(store, upserts, deletes, message):
    ds = store.create_dataset("pets")
    ds.commit(boxes(3))
    tables = {name: pa.Table.from_pylist(records) for name, records in (upserts or {}).items()}
    with pytest.raises(annostore.SchemaError, match=message):
        ds.commit_changes(tables, deletes)
    assert len(_version_files(store, "pets")) == 1


def test_version_references(store):
    ds = store.create_dataset("pets")
    for count in (1, 2, 3):
        ds.commit(boxes(count))
    ds.tag("gold", 2)
    v2 = ds.version(2)
    assert ds.version("2") == v2 and ds.version("gold") == v2 and ds.version(v2.id[:10]) == v2
    assert ds.version("latest").number == 3 and ds.latest.number == 3
    for bad in (7, "7", "silver", "deadbeef", "", True):
        with pytest.raises(annostore.NotFoundError):
            ds.version(bad)


def test_an_id_prefix_of_digits_only_still_resolves(store):
    ds = store.create_dataset("pets")
    for count in (1, 2):
        ds.commit(boxes(count))
    # Pretend version 2's content id starts with digits only, as 1 in ~30 ids does.
    ds._manifests[2] = ds._manifest(2).model_copy(update={"id": "20251130" + "a" * 56})
    assert ds.version("2025113").number == 2
    assert ds.version("2").number == 2 and ds.version(1).number == 1
    with pytest.raises(annostore.NotFoundError):
        ds.version("999999")


def test_tags_need_force_to_move(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(1))
    ds.commit(boxes(2))
    ds.tag("gold", 1)
    ds.tag("gold", 1)  # the same again is fine
    with pytest.raises(annostore.ConflictError, match="already names version 1"):
        ds.tag("gold", 2)
    ds.tag("gold", 2, force=True)
    assert ds.tags() == {"gold": 2}
    assert ds.version(2).to_dict()["tags"] == ["gold"]
    ds.delete_tag("gold")
    assert ds.tags() == {}


@pytest.mark.parametrize(
    "name", ["", "..", "a/b", "../up", "a\\b", "tab\there", "x" * 129, ".hidden", "a..b", "é"]
)
def test_bad_dataset_names_are_refused_and_write_nothing(store, name):
    with pytest.raises(annostore.InvalidNameError):
        store.create_dataset(name)
    assert store.datasets() == []


@pytest.mark.parametrize("name", ["12", "latest", "a/b", "..", ""])
def test_bad_tag_names_are_refused(store, name):
    ds = store.create_dataset("pets")
    ds.commit(boxes(1))
    with pytest.raises(annostore.InvalidNameError):
        ds.tag(name, 1)
    assert ds.tags() == {}


def test_datasets_create_and_delete(store):
    assert store.datasets() == []
    store.create_dataset("b")
    store.create_dataset("a").commit(boxes(2))
    assert store.datasets() == ["a", "b"]
    with pytest.raises(annostore.ConflictError):
        store.create_dataset("a")
    assert store.create_dataset("a", exist_ok=True).latest.number == 1
    store.delete_dataset("a")
    assert store.datasets() == ["b"]
    with pytest.raises(annostore.NotFoundError, match="no dataset 'a'"):
        store.dataset("a")


def test_compaction_keeps_content_and_drops_tombstones(store):
    store.auto_compact = False
    ds = store.create_dataset("pets")
    for shift in range(6):
        ds.commit(boxes(30, shift=shift / 100))
    before = ds.latest
    assert len(before.manifest.tables["regions"].tombstones) == 5
    compacted = ds.compact()
    assert compacted.number == 7 and compacted.operation == "compact"
    assert compacted.changes["regions"] == {"inserted": 0, "updated": 0, "deleted": 0}
    state = compacted.manifest.tables["regions"]
    assert state.tombstones == [] and len(state.fragments) == 1 and state.rows == 60
    clear_cache()
    assert ds.version(7).tables == before.tables == boxes(30, shift=0.05)
    assert ds.version(2).tables == boxes(30, shift=0.01)


def test_many_small_commits_trigger_compaction(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(40))
    for step in range(18):
        ds.commit_changes(
            {
                "regions": pa.Table.from_pylist(
                    [{"annotation_id": "a00001", "region_id": f"n{step}", "type": "bbox"}]
                )
            }
        )
    operations = [v.operation for v in ds.log()]
    assert "compact" in operations
    latest = ds.latest
    assert len(latest.manifest.tables["regions"].fragments) <= 17
    assert latest.tables.regions.num_rows == 80 + 18


def test_gc_removes_only_old_unreferenced_files(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(5))
    orphan = "datasets/pets/objects/" + "0" * 64 + ".parquet"
    store._storage.write_whole(orphan, b"left by a killed writer")
    young = store.gc(grace_seconds=3600)
    assert young.removed == [] and young.kept_young == 1
    dry = store.gc(grace_seconds=0, dry_run=True)
    assert dry.removed == [orphan] and store._storage.exists(orphan)
    report = store.gc(grace_seconds=0)
    assert report.removed == [orphan] and report.removed_bytes == len(b"left by a killed writer")
    assert not store._storage.exists(orphan)
    clear_cache()
    assert ds.version(1).tables == boxes(5)
    assert store.verify().ok


def _flip_a_byte(store: annostore.Store, path: str) -> None:
    data = bytearray(store._storage.read_bytes(path))
    data[len(data) // 2] ^= 0x01
    store._storage.fs.pipe_file(store._storage.full(path), bytes(data))


def test_a_flipped_byte_is_detected_on_read_and_by_verify(store):
    ds = store.create_dataset("pets")
    version = ds.commit(boxes(50))
    fragment = version.manifest.tables["regions"].fragments[0]
    path = f"datasets/pets/{fragment.path}"
    assert store.verify().ok
    _flip_a_byte(store, path)
    clear_cache()
    with pytest.raises(annostore.CorruptionError, match=fragment.sha256[:12]) as caught:
        store.dataset("pets").version(1).tables.regions  # noqa: B018
    assert caught.value.path == path
    report = store.verify()
    assert not report.ok
    assert [(p.path, p.problem[:9]) for p in report.problems] == [(path, "corrupted")]
    # The other tables still read.
    assert store.dataset("pets").version(1).table("tasks").num_rows == 50


def test_a_tampered_manifest_is_detected(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(2))
    path = "datasets/pets/versions/0000000001.json"
    manifest = json.loads(store._storage.read_bytes(path))
    manifest["tables"]["tasks"]["rows"] = 99
    store._storage.fs.pipe_file(store._storage.full(path), json.dumps(manifest).encode())
    with pytest.raises(annostore.CorruptionError, match="does not match its id"):
        store.dataset("pets").version(1)
    assert not store.verify().ok


def test_a_commit_on_an_old_base_rebases_when_rows_do_not_overlap(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(4))
    ds.commit_changes(
        {
            "regions": pa.Table.from_pylist(
                [{"annotation_id": "a00000", "region_id": "x", "type": "bbox"}]
            )
        }
    )
    rebased = ds.commit_changes(
        {
            "regions": pa.Table.from_pylist(
                [{"annotation_id": "a00003", "region_id": "y", "type": "bbox"}]
            )
        },
        base=1,
    )
    assert (rebased.number, rebased.parent) == (3, 2)
    keys = {(r["annotation_id"], r["region_id"]) for r in rebased.tables.regions.to_pylist()}
    assert {("a00000", "x"), ("a00003", "y")} <= keys and len(keys) == 10


def test_a_commit_on_an_old_base_conflicts_when_rows_overlap(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(4))
    ds.commit(boxes(4, label="dog"))
    with pytest.raises(annostore.ConflictError, match="changed the same rows") as caught:
        ds.commit(boxes(4, label="bird"), base=1)
    assert ("a00000", "r0") in [tuple(k) for k in caught.value.rows["regions"]]
    assert ds.latest.number == 2


def test_a_rebase_that_would_orphan_rows_is_a_conflict(store):
    ds = store.create_dataset("pets")
    ds.commit(boxes(2))
    ds.commit_changes(
        deletes={
            "tasks": ["t00001"],
            "annotations": ["a00001"],
            "regions": [("a00001", "r0"), ("a00001", "r1")],
        }
    )
    with pytest.raises(annostore.ConflictError, match="inconsistent"):
        ds.commit_changes(
            {
                "regions": pa.Table.from_pylist(
                    [{"annotation_id": "a00001", "region_id": "r5", "type": "bbox"}]
                )
            },
            base=1,
        )
    assert ds.latest.number == 2


def test_a_failing_automatic_compaction_does_not_fail_the_published_commit(monkeypatch, caplog):
    ds = annostore.open("memory://auto-compact-fails").create_dataset("pets")
    ds.commit(boxes(40))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(annostore.Dataset, "compact", broken)
    for step in range(18):
        version = ds.commit_changes(
            {
                "regions": pa.Table.from_pylist(
                    [{"annotation_id": "a00001", "region_id": f"n{step}", "type": "bbox"}]
                )
            }
        )
    assert version.number == 19 and ds.latest.number == 19
    assert "automatic compaction of pets failed after version" in caplog.text
    assert "disk full" in caplog.text


def test_a_commit_is_right_even_when_key_hashes_collide(tmp_path, monkeypatch):
    """The full-state comparison joins on a 64-bit hash of the key; make every key hash
    fall into one of three values and the commit must still find exactly the changes."""
    monkeypatch.setattr("annostore._sql.KEY_HASH", "hash({keys}) % 3")
    ds = annostore.open(str(tmp_path / "store")).create_dataset("d")
    first = boxes(20, per_task=3)
    ds.commit(first)
    regions = first.regions.to_pylist()
    regions[4]["label"] = "dog"  # changed
    del regions[7]  # deleted
    regions.append({**regions[0], "region_id": "new"})  # inserted
    second = annostore.Tables(
        first.tasks,
        first.annotations,
        pa.Table.from_pylist(regions, first.regions.schema),
        first.labels,
    )
    version = ds.commit(second)
    assert version.changes["regions"] == {"inserted": 1, "updated": 1, "deleted": 1}
    assert version.tables.regions.sort_by(
        [("annotation_id", "ascending"), ("region_id", "ascending")]
    ).equals(second.regions.sort_by([("annotation_id", "ascending"), ("region_id", "ascending")]))
