"""Property tests: commit → read round trips, and a state machine against an in-memory model."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from strategies import tables

import annostore
from annostore._fragments import clear_cache


@given(state=tables())
def test_commit_then_read_gives_the_same_tables(state):
    store = annostore.open(f"memory://prop-{uuid.uuid4().hex}")
    version = store.create_dataset("d").commit(state)
    clear_cache()
    assert store.dataset("d").version(version.number).tables == state


@given(first=tables(), second=tables())
def test_a_second_commit_reads_back_and_leaves_the_first_intact(first, second):
    store = annostore.open(f"memory://prop-{uuid.uuid4().hex}")
    ds = store.create_dataset("d")
    v1 = ds.commit(first)
    v2 = ds.commit(second)
    clear_cache()
    assert ds.version(v1.number).tables == first
    assert ds.version(v2.number).tables == second
    if first == second:
        assert v2.number == v1.number
    else:
        changed = sum(
            v2.changes[t][op] for t in v2.changes for op in ("inserted", "updated", "deleted")
        )
        assert changed > 0


def test_nan_and_negative_zero_survive_a_round_trip():
    state = annostore.Tables.from_pylist(
        tasks=[{"task_id": "t"}],
        annotations=[{"annotation_id": "a", "task_id": "t"}],
        regions=[
            {
                "annotation_id": "a",
                "region_id": "r",
                "type": "bbox",
                "x": float("nan"),
                "y": -0.0,
                "w": 1e-300,
            }
        ],
    )
    store = annostore.open(f"memory://prop-{uuid.uuid4().hex}")
    version = store.create_dataset("d").commit(state)
    clear_cache()
    row = store.dataset("d").version(version.number).tables.regions
    assert pc.is_nan(row.column("x"))[0].as_py()
    assert str(row.column("y")[0].as_py()) == "-0.0" and row.column("w")[0].as_py() == 1e-300
    assert store.dataset("d").commit(state).number == version.number


class VersionHistory(RuleBasedStateMachine):
    """Random commits, change sets, compactions, gc runs and tags; every version must read
    back exactly as the model says it was committed."""

    versions = Bundle("versions")

    @initialize()
    def open_store(self):
        self.store = annostore.open(f"memory://machine-{uuid.uuid4().hex}")
        self.dataset = self.store.create_dataset("d")
        self.model: dict[int, annostore.Tables] = {}
        self.tags: dict[str, int] = {}

    def _latest(self) -> annostore.Tables | None:
        return self.model[max(self.model)] if self.model else None

    def _record_head(self, expected: annostore.Tables) -> None:
        for version in self.dataset.log():
            if version.number not in self.model:
                self.model[version.number] = expected

    @rule(target=versions, state=tables(max_tasks=4))
    def commit(self, state):
        before = self._latest()
        version = self.dataset.commit(state)
        if before is not None and before == state:
            assert version.number == max(self.model)
        self._record_head(state)
        return version.number

    @precondition(lambda self: self.model)
    @rule(target=versions, data=st.data())
    def commit_changes(self, data):
        current = self._latest()
        regions = current.regions
        deleted_rows = (
            data.draw(
                st.lists(st.integers(0, max(regions.num_rows - 1, 0)), max_size=3, unique=True)
            )
            if regions.num_rows
            else []
        )
        kept = [i for i in range(regions.num_rows) if i not in deleted_rows]
        relabel = (
            data.draw(st.lists(st.sampled_from(kept), max_size=2, unique=True)) if kept else []
        )
        upserts = regions.take(pa.array(relabel, pa.int64())) if relabel else regions.slice(0, 0)
        upserts = upserts.set_column(
            upserts.schema.get_field_index("label"),
            "label",
            pa.array([f"L{uuid.uuid4().hex[:4]}"] * upserts.num_rows, pa.string()),
        )
        annotation_ids = current.annotations.column("annotation_id").to_pylist()
        if annotation_ids:
            new_region = {
                "annotation_id": data.draw(st.sampled_from(annotation_ids)),
                "region_id": f"n-{uuid.uuid4().hex[:6]}",
                "type": "bbox",
                "x": 0.5,
            }
            upserts = pa.concat_tables(
                [
                    upserts,
                    annostore.Tables(
                        regions=pa.Table.from_pylist([new_region]), check_references=False
                    ).regions,
                ]
            )
        deletes = regions.take(pa.array(deleted_rows, pa.int64())).select(
            ["annotation_id", "region_id"]
        )
        version = self.dataset.commit_changes({"regions": upserts}, {"regions": deletes})
        # The model: the same change applied with plain Arrow.
        changed = {
            (r["annotation_id"], r["region_id"])
            for r in upserts.select(["annotation_id", "region_id"]).to_pylist()
        }
        changed |= {(r["annotation_id"], r["region_id"]) for r in deletes.to_pylist()}
        remaining = [
            r for r in regions.to_pylist() if (r["annotation_id"], r["region_id"]) not in changed
        ]
        expected_regions = pa.concat_tables(
            [pa.Table.from_pylist(remaining, regions.schema), upserts]
        )
        expected = annostore.Tables(
            current.tasks, current.annotations, expected_regions, current.labels
        )
        self._record_head(expected)
        assert self.model[version.number] == expected
        return version.number

    @rule(target=versions, number=versions, drop_a_region=st.booleans())
    def commit_tables_read_from_a_version(self, number, drop_a_region):
        """Commit a version's tables as read (the objects themselves, which a commit may
        recognise as its base's, unchanged), optionally with one region dropped: the new
        head holds exactly those tables, whichever version is the base."""
        read = self.dataset.version(number).tables
        expected = self.model[number]
        regions, expected_regions = read.regions, expected.regions
        if drop_a_region and regions.num_rows:
            regions = regions.slice(1)
            dropped = regions.select(["annotation_id", "region_id"]).to_pylist()
            keep = [
                {"annotation_id": r["annotation_id"], "region_id": r["region_id"]} in dropped
                for r in expected_regions.select(["annotation_id", "region_id"]).to_pylist()
            ]
            expected_regions = expected_regions.filter(pa.array(keep, pa.bool_()))
        self.dataset.commit(annostore.Tables(read.tasks, read.annotations, regions, read.labels))
        expected = annostore.Tables(
            expected.tasks, expected.annotations, expected_regions, expected.labels
        )
        self._record_head(expected)
        assert self.dataset.latest.tables == expected
        return self.dataset.latest.number

    @precondition(lambda self: self.model)
    @rule()
    def compact(self):
        current = self._latest()
        version = self.dataset.compact()
        assert version.operation == "compact"
        self._record_head(current)

    @rule()
    def gc(self):
        self.store.gc(grace_seconds=0)

    @rule(number=versions, name=st.sampled_from(["gold", "silver", "v-1"]))
    def tag(self, number, name):
        self.dataset.tag(name, number, force=True)
        self.tags[name] = number

    @rule(number=versions)
    def read_old_version(self, number):
        clear_cache()
        assert self.dataset.version(number).tables == self.model[number]

    @invariant()
    def latest_and_tags_match_the_model(self):
        if not self.model:
            assert self.dataset.latest is None
            return
        latest = self.dataset.latest
        assert latest.number == max(self.model)
        assert latest.tables == self.model[latest.number]
        assert latest.counts == self._latest().counts
        assert self.dataset.tags() == self.tags
        for name, number in self.tags.items():
            assert self.dataset.version(name).number == number

    def teardown(self):
        if getattr(self, "store", None) is not None:
            report = self.store.verify()
            assert report.ok, report.problems
            assert report.orphans == 0  # gc(grace 0) ran or nothing was orphaned


test_version_history = VersionHistory.TestCase
