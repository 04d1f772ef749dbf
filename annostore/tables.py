"""``Tables``: the four canonical Arrow tables, conformed and checked."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter, ValidationError

from annostore.errors import SchemaError
from annostore.schemas import COLUMNS, KEYS, RECORD_MODELS, TABLE_NAMES, Column, arrow_schema

from . import _sql
from ._arrow import is_sorted
from ._provenance import is_version_table
from ._sql import column_list, connection, first_row

__all__ = ["Tables", "conform_table"]

TableLike = pa.Table | pa.RecordBatch


def _family(data_type: pa.DataType) -> str:
    if pa.types.is_null(data_type):
        return "null"
    if pa.types.is_dictionary(data_type):
        return _family(data_type.value_type)
    if (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    ):
        return "string"
    if pa.types.is_integer(data_type):
        return "integer"
    if pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return "floating"
    if pa.types.is_boolean(data_type):
        return "boolean"
    if pa.types.is_timestamp(data_type):
        return "timestamp"
    if (
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_list_view(data_type)
    ):
        return "list"
    if pa.types.is_struct(data_type):
        return "struct"
    return str(data_type)


def _castable(found: pa.DataType, expected: pa.DataType) -> bool:
    have, want = _family(found), _family(expected)
    if have == "null" or have == want:
        return True
    return have == "integer" and want == "floating"


def _conform_column(table: str, column: Column, values: pa.ChunkedArray) -> pa.ChunkedArray:
    where = f"{table}.{column.name}"
    if values.type != column.type:
        if not _castable(values.type, column.type):
            raise SchemaError(
                f"{where}: expected {column.type}, got {values.type}",
                table=table,
                column=column.name,
            )
        if pa.types.is_timestamp(values.type) and values.type.tz is None:
            values = pc.assume_timezone(values, "UTC")
        try:
            values = values.cast(column.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise SchemaError(
                f"{where}: expected {column.type}, got {values.type} that does not convert ({exc})",
                table=table,
                column=column.name,
            ) from exc
    if not column.nullable and values.null_count:
        first = pc.index(pc.is_null(values), True).as_py()
        raise SchemaError(
            f"{where}: expected a value, got null at row {first}", table=table, column=column.name
        )
    if column.choices and len(values):
        bad = pc.filter(values, pc.invert(pc.is_in(values, value_set=pa.array(column.choices))))
        bad = bad.drop_null()
        if len(bad):
            raise SchemaError(
                f"{where}: expected one of {', '.join(column.choices)}, got {bad[0].as_py()!r}",
                table=table,
                column=column.name,
            )
    if column.minimum is not None and len(values) and values.null_count < len(values):
        smallest = pc.min(values).as_py()
        if smallest < column.minimum:
            raise SchemaError(
                f"{where}: expected values >= {column.minimum:g}, got {smallest}",
                table=table,
                column=column.name,
            )
    return values


def conform_table(table: str, data: TableLike | None) -> pa.Table:
    """Return ``data`` with exactly the canonical schema of ``table``.

    Columns left out are null (or their default, for ``kind``, ``ground_truth`` and
    ``cancelled``); compatible types are cast (string views to string, integers to wider
    integers or floats, timestamps to UTC microseconds). A column that is unknown, of the
    wrong type, or null where a value is required raises :class:`SchemaError`.
    """
    schema = arrow_schema(table)
    if data is None:
        return schema.empty_table()
    if isinstance(data, pa.Table) and is_version_table(data, table):
        # A version's own table object conforms; keeping it lets a commit skip comparing it.
        return data
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if not isinstance(data, pa.Table):
        raise SchemaError(
            f"{table}: expected a pyarrow Table, got {type(data).__name__}", table=table
        )
    known = {c.name for c in COLUMNS[table]}
    unknown = [name for name in data.column_names if name not in known]
    if unknown:
        raise SchemaError(
            f"{table}: unknown column {unknown[0]!r} (columns are {', '.join(c.name for c in COLUMNS[table])}; "
            "keep other fields in the 'extra' or 'data' JSON column)",
            table=table,
            column=unknown[0],
        )
    if len(set(data.column_names)) != len(data.column_names):
        raise SchemaError(f"{table}: a column name appears twice", table=table)
    rows = data.num_rows
    arrays = []
    for column in COLUMNS[table]:
        if column.name in data.column_names:
            arrays.append(_conform_column(table, column, data.column(column.name)))
        elif column.nullable:
            arrays.append(pa.nulls(rows, column.type))
        elif column.default is not None:
            arrays.append(pa.repeat(pa.scalar(column.default, column.type), rows))
        else:
            raise SchemaError(
                f"{table}: missing column {column.name!r}", table=table, column=column.name
            )
    return pa.Table.from_arrays(arrays, schema=schema)


def _pydantic_message(table: str, error: ValidationError) -> str:
    first = error.errors()[0]
    location = list(first["loc"])
    index = location.pop(0) if location and isinstance(location[0], int) else None
    field = ".".join(str(part) for part in location) or "record"
    where = f"{table}[{index}].{field}" if index is not None else f"{table}.{field}"
    detail = first["msg"]
    detail = detail[0].lower() + detail[1:]
    column = next((c for c in COLUMNS[table] if location and c.name == location[0]), None)
    if first["type"] == "extra_forbidden":
        message = "unknown field (keep other fields in the 'extra' or 'data' JSON column)"
    elif first["type"] == "missing":
        message = "expected a value, got nothing"
    elif column is not None and len(location) == 1:
        expected = "JSON text, a dict or a list" if column.is_json else str(column.type)
        message = f"expected {expected}, got {first.get('input')!r} ({detail})"
    else:
        message = f"{detail}, got {first.get('input')!r}"
    return f"{where}: {message}"


def _json_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A private copy of ``metadata`` made of JSON values only (SchemaError otherwise)."""
    if not metadata:
        return {}
    if not isinstance(metadata, Mapping):
        raise SchemaError(f"metadata: expected a mapping, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"metadata: not JSON ({exc})") from None


class Tables:
    """The four canonical tables of one dataset state: ``tasks``, ``annotations``, ``regions``
    and ``labels``, each a :class:`pyarrow.Table` with the fixed schema of
    :mod:`annostore.schemas`.

    Build it from Arrow tables (``Tables(tasks=..., regions=...)``) or from Python records
    (:meth:`from_pylist`). Columns left out are null and tables left out are empty. Types,
    required values, duplicate keys and references (annotation → task, region → annotation)
    are checked; any problem raises :class:`~annostore.SchemaError`. Pass
    ``check_references=False`` for a partial set of rows, such as the upserts of
    :meth:`Dataset.commit_changes <annostore.Dataset.commit_changes>`.
    """

    __slots__ = (*TABLE_NAMES, "metadata")

    tasks: pa.Table
    annotations: pa.Table
    regions: pa.Table
    labels: pa.Table
    #: dataset-level facts of the source with no row to live in (COCO ``info`` and
    #: ``licenses``, a Label Studio label config, …), as JSON-ready values
    metadata: dict[str, Any]

    def __init__(
        self,
        tasks: TableLike | None = None,
        annotations: TableLike | None = None,
        regions: TableLike | None = None,
        labels: TableLike | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        check_references: bool = True,
    ) -> None:
        given = {"tasks": tasks, "annotations": annotations, "regions": regions, "labels": labels}
        for name in TABLE_NAMES:
            object.__setattr__(self, name, conform_table(name, given[name]))
        object.__setattr__(self, "metadata", _json_metadata(metadata))
        self._check(check_references)

    @classmethod
    def _trusted(cls, metadata: Mapping[str, Any] | None = None, **tables: pa.Table) -> Tables:
        """Wrap tables already known to conform (read back from a version)."""
        instance = cls.__new__(cls)
        for name in TABLE_NAMES:
            table = tables.get(name)
            object.__setattr__(
                instance, name, table if table is not None else arrow_schema(name).empty_table()
            )
        object.__setattr__(instance, "metadata", dict(metadata or {}))
        return instance

    def with_metadata(self, metadata: Mapping[str, Any] | None) -> Tables:
        """The same tables with other metadata."""
        return Tables._trusted(metadata=_json_metadata(metadata), **dict(self))

    @classmethod
    def from_pylist(
        cls,
        tasks: Sequence[Mapping[str, Any]] = (),
        annotations: Sequence[Mapping[str, Any]] = (),
        regions: Sequence[Mapping[str, Any]] = (),
        labels: Sequence[Mapping[str, Any]] = (),
        *,
        metadata: Mapping[str, Any] | None = None,
        check_references: bool = True,
    ) -> Tables:
        """Build from Python records (dicts keyed by column name), validated one by one.

        JSON columns (``data``, ``extra``) take JSON text, or a dict or list to encode.
        A bad record raises :class:`~annostore.SchemaError` naming it:
        ``regions[3].x: input should be a valid number, got 'left'``.
        """
        given = {"tasks": tasks, "annotations": annotations, "regions": regions, "labels": labels}
        built = {}
        for name in TABLE_NAMES:
            adapter = TypeAdapter(list[RECORD_MODELS[name]])
            try:
                records = adapter.validate_python(list(given[name]))
            except ValidationError as exc:
                raise SchemaError(_pydantic_message(name, exc), table=name) from exc
            rows = [record.model_dump() for record in records]
            built[name] = pa.Table.from_pylist(rows, schema=arrow_schema(name))
        return cls(**built, metadata=metadata, check_references=check_references)

    def _check(self, check_references: bool) -> None:
        with connection() as con:
            for name in TABLE_NAMES:
                table = getattr(self, name)
                if is_version_table(table, name) or is_sorted(table, list(KEYS[name])):
                    # a version's own table object has unique keys, and so do keys in
                    # strictly ascending order (the usual input: 0.3 ms for 100 rows and
                    # 30-50 ms for 1M, against 8 ms and 0.19 s for grouping them in DuckDB)
                    continue
                keys = column_list(KEYS[name])
                con.register("checked", table)
                # grouped by a 64-bit hash of the key first (0.29 s against 0.43 s for
                # the key strings, 1M COCO regions); only a repeated hash needs the keys
                duplicate = first_row(
                    con,
                    f"SELECT {_sql.KEY_HASH.format(keys=keys)} FROM checked GROUP BY 1 HAVING count(*) > 1 LIMIT 1",
                ) and first_row(
                    con,
                    f"SELECT {keys}, count(*) AS n FROM checked GROUP BY ALL HAVING n > 1 LIMIT 1",
                )
                con.unregister("checked")
                if duplicate:
                    shown = ", ".join(
                        f"{k}={v!r}" for k, v in zip(KEYS[name], duplicate, strict=False)
                    )
                    raise SchemaError(
                        f"{name}: duplicate key {shown} ({duplicate[-1]} rows)", table=name
                    )
            if check_references:
                self._check_reference(con, "annotations", "task_id", "tasks")
                self._check_reference(con, "regions", "annotation_id", "annotations")

    def _check_reference(self, con: Any, child: str, column: str, parent: str) -> None:
        if getattr(self, child).num_rows == 0:
            return
        con.register(
            "child", getattr(self, child).select([column] + [k for k in KEYS[child] if k != column])
        )
        con.register("parent", getattr(self, parent).select([column]))
        row = first_row(con, f'SELECT * FROM child ANTI JOIN parent USING ("{column}") LIMIT 1')
        con.unregister("child")
        con.unregister("parent")
        if row:
            raise SchemaError(
                f"{child}: row with {column}={row[0]!r} points at an unknown {parent[:-1]} "
                f"(pass check_references=False for a partial set of rows)",
                table=child,
                column=column,
            )

    def __iter__(self) -> Iterator[tuple[str, pa.Table]]:
        """(name, table) pairs in the canonical order."""
        for name in TABLE_NAMES:
            yield name, getattr(self, name)

    def __getitem__(self, name: str) -> pa.Table:
        if name not in TABLE_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Tables is immutable; build a new one")

    @property
    def counts(self) -> dict[str, int]:
        """Row count of each table."""
        return {name: table.num_rows for name, table in self}

    def sorted(self) -> Tables:
        """The same rows, each table sorted by its key."""
        return Tables._trusted(
            metadata=self.metadata,
            **{name: table.sort_by([(k, "ascending") for k in KEYS[name]]) for name, table in self},
        )

    def equals(self, other: Tables) -> bool:
        """Same rows in every table, order aside, and the same metadata."""
        if not isinstance(other, Tables):
            return NotImplemented
        if self.metadata != other.metadata:
            return False
        mine, theirs = self.sorted(), other.sorted()
        return all(getattr(mine, name).equals(getattr(theirs, name)) for name in TABLE_NAMES)

    __eq__ = equals  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={n}" for name, n in self.counts.items())
        return f"Tables({counts})"
