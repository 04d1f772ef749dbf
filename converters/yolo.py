"""YOLO (Ultralytics layouts, and Darknet's older ones), both directions.

Reading finds the images (from ``data.yaml``'s splits — folders, list files or lists —,
Darknet's ``obj.data``, or the usual folder layouts) and maps each image to its label file
as Ultralytics does: the last ``/images/`` of the path becomes ``/labels/`` and the
extension ``.txt`` (no ``/images/``: the file beside the image). An image with a label
file becomes a task with one annotation (an empty file: an annotation with no regions, a
background image); an image without one is an unlabeled task. The variant — ``detect``,
``segment``, ``pose``, ``obb``, ``classify`` — comes from ``data.yaml`` (``kpt_shape``
means pose) or the ``variant`` option, never from counting tokens; a line whose token
count does not fit the variant is an error naming the file and line. A confidence after
the geometry makes the file's annotation a prediction.

Regions get ids derived from their content (label, geometry, occurrence), so re-importing
the same files changes nothing. Boxes are stored by corner (``x = cx - w / 2``), OBB
corners as a four-point polygon (exact both ways), pose keypoints as (x, y, v) triples.
Label lines are parsed by DuckDB as columns, never a Python object per region.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from annostore._arrow import counting
from annostore._sql import connection
from annostore.errors import AnnostoreError, ParseError
from annostore.tables import Tables

from . import _io
from ._assets import image_sizes_from_headers, install_asset_macros
from ._base import Converter, Report, SkipCollector
from ._numbers import install_number_macros
from ._selection import annotation_selection, geometry_labels, register_tables, unregister_tables
from ._sqljson import image_sizes_table, sql_string
from ._yaml import dump_yaml, load_yaml

__all__ = ["VARIANTS", "YoloConverter", "converter"]

VARIANTS = ("detect", "segment", "pose", "obb", "classify")
IMAGE_EXTENSIONS = frozenset(
    {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"}
)
SPLITS = ("train", "val", "test")
_SPLIT_FOLDERS = (*SPLITS, "valid")
_CONFIG_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
_NAME_FILES = ("obj.names", "classes.txt", "classes.names", "names.txt")


def _is_image(path: str) -> bool:
    return path.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS if "." in path else False


def label_path(image: str) -> str:
    """Ultralytics' image → label mapping: the last ``/images/`` becomes ``/labels/``."""
    folder_marker = "/images/"
    candidate = "/" + image
    if folder_marker in candidate:
        head, tail = candidate.rsplit(folder_marker, 1)
        candidate = head + "/labels/" + tail
    return candidate[1:].rsplit(".", 1)[0] + ".txt"


class _Layout:
    """What reading found: images (relative to root) with their split, names, config."""

    def __init__(self) -> None:
        self.images: dict[str, str | None] = {}  # relative image path → split
        self.names: dict[int, str] = {}
        self.config: dict[str, Any] = {}
        self.config_name: str | None = None
        self.names_file: str | None = None
        self.classes_from_folders: dict[str, str] = {}  # image → class (classify)
        self.missing: set[str] = set()  # listed images that are not in the folder
        self.names_generated = False

    def assign(self, images: list[str], split: str) -> None:
        """Put images in a split; an image in several splits (train and val sharing
        one list, as when a dataset has no split) has none."""
        found = self.images
        for image in images:
            found[image] = split if found.get(image, split) == split else None


class YoloConverter(Converter):
    """Ultralytics YOLO detect / segment / pose / OBB / classify, and Darknet layouts."""

    name = "yolo"
    description = "YOLO folders (Ultralytics data.yaml, Darknet obj.data): detect, segment, pose, obb, classify"
    represents = ("bbox", "polygon", "keypoints", "class")

    def detect(self, source: str) -> float:
        fs, path = _io.filesystem(source)
        if fs.isfile(path):
            name = posixpath.basename(path)
            return 0.9 if name in _CONFIG_NAMES or name == "obj.data" else 0.0
        if not fs.isdir(path):
            return 0.0
        entries = {posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)}
        if entries & set(_CONFIG_NAMES) or "obj.data" in entries:
            return 0.9
        if "labels" in entries and "images" in entries:
            return 0.8
        if entries & set(_NAME_FILES):
            return 0.6
        return 0.0

    # ------------------------------------------------------------------ read
    def read(
        self,
        source: str,
        *,
        errors: str = "raise",
        variant: str | None = None,
        **options: Any,
    ) -> tuple[Tables, Report]:
        """Read a YOLO dataset folder (or its ``data.yaml`` / ``obj.data``)."""
        if options:
            raise TypeError(f"unknown YOLO read options: {', '.join(sorted(options))}")
        if variant is not None and variant not in VARIANTS:
            raise AnnostoreError(
                f"unknown YOLO variant {variant!r}; choose one of {', '.join(VARIANTS)}"
            )
        collector = SkipCollector(errors)  # type: ignore[arg-type]
        fs, path = _io.filesystem(source)
        if fs.isfile(path):
            root, config_file = posixpath.dirname(path), posixpath.basename(path)
        elif fs.isdir(path):
            root, config_file = path.rstrip("/"), None
        else:
            raise AnnostoreError(f"{source}: no such file or folder")
        files = _io.files_under(fs, root)
        layout = _find_layout(fs, root, files, config_file, str(source), collector, variant)
        chosen = (
            variant
            or ("pose" if "kpt_shape" in layout.config else layout.config.get("task"))
            or "detect"
        )
        if chosen not in VARIANTS:
            raise ParseError(str(source), "task", f"unknown YOLO task {chosen!r}")
        report = Report(self.name, "read", options={"variant": chosen})
        if chosen == "classify":
            tables = _classify_tables(layout)
        else:
            labels_present = set(files)
            wanted = {image: label_path(image) for image in layout.images}
            contents = _read_label_files(
                fs, root, [(image, lp) for image, lp in wanted.items() if lp in labels_present]
            )
            tables = parse_labels(
                layout,
                contents,
                chosen,
                str(source),
                collector,
                kpt_shape=layout.config.get("kpt_shape"),
            )
        report.counts = tables.counts
        report.skipped = collector.skipped
        if layout.missing:
            report.notes.append(
                f"{len(layout.missing)} listed images are not in the folder (tasks kept)"
            )
        if layout.names_generated and tables.regions.num_rows:
            report.notes.append(
                "no class names found (data.yaml, obj.names, classes.txt): classes are named by index"
            )
        return tables, report

    # ------------------------------------------------------------------ write
    def write(
        self,
        tables: Tables,
        target: str,
        *,
        strict: bool = False,
        variant: str = "detect",
        policy: str = "latest",
        annotator: str | None = None,
        image_root: str | None = None,
        images: str = "none",
        overwrite: bool = False,
        **options: Any,
    ) -> Report:
        """Write a YOLO folder: ``data.yaml``, image lists per split and one label file per
        labeled task. ``images="link"`` (hard links, copies across devices) or ``"copy"``
        puts the images from ``image_root`` beside their labels, as Ultralytics needs."""
        if options:
            raise TypeError(f"unknown YOLO write options: {', '.join(sorted(options))}")
        if variant not in VARIANTS:
            raise AnnostoreError(
                f"unknown YOLO variant {variant!r}; choose one of {', '.join(VARIANTS)}"
            )
        report = Report(self.name, "write", options={"variant": variant})
        if images not in ("none", "link", "copy"):
            raise AnnostoreError(f"images must be 'none', 'link' or 'copy', got {images!r}")
        if images != "none" and not image_root:
            raise AnnostoreError(
                f"images={images!r} needs image_root=<folder the task uris are relative to>"
            )
        if variant == "classify":
            if images == "none":
                raise AnnostoreError(
                    "YOLO classify is folders of images, one per class: pass images='link' or "
                    "'copy' and image_root=<folder the task uris are relative to>"
                )
            placements = classify_placements(tables, report, policy, annotator)
            report.check_strict(strict)
            with _io.atomic_folder(target, overwrite=overwrite) as folder:
                _place_images(placements, str(image_root), folder, images, report)
            report.files_written = report.counts.get("images placed", 0)
            return report
        # only rotated shapes need pixels: no header is read for anything else
        sizes = (
            image_sizes_from_headers(tables, image_root, report, only=_rotated_tasks(tables))
            if image_root
            else {}
        )
        files, placements = render(
            tables, report, variant=variant, policy=policy, annotator=annotator, image_sizes=sizes
        )
        report.check_strict(strict)
        with _io.atomic_folder(target, overwrite=overwrite) as folder:
            if images != "none":
                _place_images(placements, str(image_root), folder, images, report)
            made: set[str] = set()
            for relative, content in files:
                directory = posixpath.dirname(relative)
                if directory not in made:
                    os.makedirs(os.path.join(folder, directory), exist_ok=True)
                    made.add(directory)
                with open(os.path.join(folder, relative), "wb") as handle:
                    handle.write(content)
        report.files_written = len(files)
        return report


converter = YoloConverter()


def _rotated_tasks(tables: Tables) -> pa.Array:
    """Task ids with a rotated box or ellipse (whose YOLO form is computed in pixels)."""
    with connection() as con:
        con.register("r", tables.regions)
        con.register("a", tables.annotations)
        try:
            return (
                con.sql(
                    "SELECT DISTINCT a.task_id FROM r JOIN a USING (annotation_id) "
                    "WHERE coalesce(r.rotation, 0) % 360 <> 0"
                )
                .to_arrow_table()
                .column(0)
                .combine_chunks()
            )
        finally:
            con.unregister("r")
            con.unregister("a")


def classify_placements(
    tables: Tables, report: Report, policy: str, annotator: str | None
) -> list[tuple[str, str]]:
    """(image uri, ``<split>/<class>/<file name>``) for each task whose exported
    annotation has a class; a second class on an image is reported, not written."""
    with connection() as con:
        register_tables(con, tables)
        try:
            annotation_selection(con, report, policy, annotator)
            rows = con.sql(
                r"""
                WITH classes AS (
                    SELECT s.task_id, r.label,
                           row_number() OVER (PARTITION BY s.task_id ORDER BY r.region_id) AS n
                    FROM selected s JOIN regions r USING (annotation_id)
                    WHERE r.type = 'class' AND r.label IS NOT NULL
                )
                SELECT t.uri,
                       coalesce(t.split, 'train') || '/' || c.label || '/' ||
                       regexp_replace(regexp_replace(t.uri, '[?#].*$', ''), '^.*/', '') AS place,
                       c.n, c.label
                FROM classes c JOIN tasks t USING (task_id)
                WHERE t.uri IS NOT NULL
                ORDER BY place
                """
            ).fetchall()
            other = con.sql(
                "SELECT count(*) FROM regions r JOIN selected USING (annotation_id) "
                "WHERE r.type <> 'class'"
            ).fetchall()[0][0]
        finally:
            unregister_tables(con)
            con.execute("DROP TABLE IF EXISTS selected")
    for *_, label in rows:
        if "/" in label or "\\" in label or label in (".", ".."):
            raise AnnostoreError(f"class {label!r} cannot be a folder name")
    report.drop(
        "second and later classes of an image (classify holds one)",
        sum(1 for _, _, n, _ in rows if n > 1),
    )
    report.drop("shapes (classify holds one class per image)", other)
    return [(uri, place) for uri, place, n, _ in rows if n == 1]


def _place_images(
    placements: list[tuple[str, str]], image_root: str, folder: str, how: str, report: Report
) -> None:
    fs, root = _io.filesystem(image_root)
    missing = 0
    for uri, relative in placements:
        try:
            source_path = _io.safe_relative(uri, source=image_root, location=relative)
        except ParseError:
            missing += 1
            continue
        source_file = f"{root.rstrip('/')}/{source_path}"
        destination = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        if not fs.exists(source_file):
            missing += 1
            continue
        if how == "link" and _io.is_local(fs):
            try:
                os.link(source_file, destination)
                continue
            except OSError:
                pass  # another device, or no hard links here: copy instead
        fs.get_file(source_file, destination)
    report.counts["images placed"] = len(placements) - missing
    if missing:
        report.notes.append(f"{missing} images were not found under {image_root}")


# ====================================================================== layout


def _read_text(fs: Any, path: str) -> str:
    with fs.open(path, "rb") as handle:
        return handle.read().decode("utf-8-sig")


def _names_from(value: Any, where: str) -> dict[int, str]:
    if isinstance(value, list):
        return {index: str(name) for index, name in enumerate(value)}
    if isinstance(value, dict):
        names = {}
        for key, name in value.items():
            if not isinstance(key, int) or key < 0:
                raise ParseError(where, "names", f"class indexes must be integers ≥ 0, got {key!r}")
            names[key] = str(name)
        return names
    raise ParseError(where, "names", f"expected a list or a mapping of names, got {value!r}")


def _resolve(root: str, base: str, entry: str, files: set[str], folders: set[str]) -> str | None:
    """A split entry of data.yaml as a path relative to root, or None if it is not there."""
    candidates = [posixpath.normpath(posixpath.join(base, entry))]
    if entry.startswith("../"):  # Roboflow writes paths relative to a folder one level down
        candidates.append(posixpath.normpath(posixpath.join(base, entry[3:])))
    if entry.startswith("data/"):  # Darknet's obj.data paths start at the parent of data/
        candidates.append(posixpath.normpath(entry[5:]))
    for candidate in candidates:
        candidate = "" if candidate == "." else candidate
        if candidate in files or candidate in folders or candidate == "":
            return candidate
    return None


def _find_layout(
    fs: Any,
    root: str,
    files: list[str],
    config_file: str | None,
    source: str,
    collector: SkipCollector,
    variant: str | None,
) -> _Layout:
    layout = _Layout()
    file_set = set(files)
    folders = {f.rpartition("/")[0] for f in files}
    for path in list(folders):
        while path:
            path = path.rpartition("/")[0]
            folders.add(path)
    if config_file is None:
        config_file = next((n for n in (*_CONFIG_NAMES, "obj.data") if n in file_set), None)
    if config_file is not None:
        text = _read_text(fs, f"{root}/{config_file}")
        where = (
            f"{source.rstrip('/')}/{config_file}" if not source.endswith(config_file) else source
        )
        if config_file.endswith(".data"):
            config = {}
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                key, sep, value = line.partition("=")
                if not sep:
                    raise ParseError(where, number, f"expected 'key = value', got {line.strip()!r}")
                config[key.strip()] = value.strip()
            layout.config = config
            names_entry = config.get("names")
            if names_entry:
                resolved = _resolve(root, "", names_entry, file_set, folders)
                if resolved is None:
                    raise ParseError(where, "names", f"names file {names_entry!r} does not exist")
                layout.names_file = resolved
        else:
            layout.config = load_yaml(text, where)
            # `names:` with nothing after it names no class (annostore 0.1.0 wrote that for
            # a dataset without detection classes; it now writes `names: {}`)
            if layout.config.get("names") is not None:
                layout.names = _names_from(layout.config["names"], where)
        layout.config_name = config_file
    if not layout.names:
        names_file = layout.names_file or next((n for n in _NAME_FILES if n in file_set), None)
        if names_file:
            lines = _read_text(fs, f"{root}/{names_file}").splitlines()
            while lines and not lines[-1].strip():
                lines.pop()
            layout.names = {index: line.strip() for index, line in enumerate(lines)}
            layout.names_file = names_file
    images = [f for f in files if _is_image(f)]
    if variant == "classify":
        for image in images:
            parts = image.split("/")
            if len(parts) >= 3 and parts[0] in _SPLIT_FOLDERS:
                layout.images[image] = "val" if parts[0] == "valid" else parts[0]
                layout.classes_from_folders[image] = parts[1]
            elif len(parts) == 2:
                layout.images[image] = None
                layout.classes_from_folders[image] = parts[0]
        return layout
    config = layout.config
    base = ""
    if isinstance(config.get("path"), str) and not config["path"].startswith("/"):
        resolved_base = _resolve(root, "", config["path"], file_set, folders)
        base = resolved_base or ""
    split_entries = {split: config.get(split) for split in SPLITS if config.get(split)}
    if not split_entries and config.get("train") is None and "valid" in config:
        split_entries["val"] = config["valid"]
    config_path = (
        f"{source.rstrip('/')}/{config_file}"
        if config_file and not source.endswith(config_file)
        else source
    )
    lists: dict[str, list[str]] = {}  # list file → its images (train and val may share one)
    if split_entries and config_file and not config_file.endswith(".data"):
        for split, entry in split_entries.items():
            for item in entry if isinstance(entry, list) else [entry]:
                _add_split(
                    fs,
                    root,
                    base,
                    str(item),
                    split,
                    images,
                    file_set,
                    folders,
                    layout,
                    config_path,
                    collector,
                    lists,
                )
    elif config_file and config_file.endswith(".data"):
        for split in ("train", "valid", "test"):
            if config.get(split):
                _add_split(
                    fs,
                    root,
                    "",
                    config[split],
                    "val" if split == "valid" else split,
                    images,
                    file_set,
                    folders,
                    layout,
                    config_path,
                    collector,
                    lists,
                )
    if not layout.images:
        for image in images:
            parts = image.split("/")
            split = None
            if len(parts) >= 3 and parts[0] == "images" and parts[1] in _SPLIT_FOLDERS:
                split = parts[1]
            elif len(parts) >= 3 and parts[0] in _SPLIT_FOLDERS and parts[1] == "images":
                split = parts[0]
            layout.images[image] = "val" if split == "valid" else split
    return layout


def _add_split(
    fs: Any,
    root: str,
    base: str,
    entry: str,
    split: str,
    images: list[str],
    files: set[str],
    folders: set[str],
    layout: _Layout,
    source: str,
    collector: SkipCollector,
    lists: dict[str, list[str]],
) -> None:
    resolved = _resolve(root, base, entry, files, folders)
    if resolved is None:
        collector.bad(source, split, f"{entry!r} does not exist in the dataset folder")
        return
    if resolved in files and not _is_image(resolved):
        # a list file: one image path per line
        if resolved not in lists:
            lists[resolved] = _listed_images(
                fs, root, resolved, files, folders, layout, source, collector
            )
        layout.assign(lists[resolved], split)
        return
    prefix = f"{resolved}/" if resolved else ""
    layout.assign([image for image in images if image.startswith(prefix)], split)


def _listed_images(
    fs: Any,
    root: str,
    list_file: str,
    files: set[str],
    folders: set[str],
    layout: _Layout,
    source: str,
    collector: SkipCollector,
) -> list[str]:
    """The images a list file names, as paths relative to root."""
    listed_base = posixpath.dirname(list_file)
    prefix = f"{listed_base}/" if listed_base else ""
    found_images = []
    for number, line in enumerate(_read_text(fs, f"{root}/{list_file}").splitlines(), 1):
        item = line.strip()
        if not item:
            continue
        # the common line, "./images/x.jpg" or "images/x.jpg" naming a file that is here,
        # without the general resolution below (a million lines: seconds of path joins)
        plain = item[2:] if item.startswith("./") else item
        found = prefix + plain if _io.is_plain_relative(plain) else None
        if found not in files:
            found = _resolve(root, listed_base, item, files, folders) or _resolve(
                root, "", item, files, folders
            )
        if found is None:
            # a listed image that is not here (labels exported without their images)
            # is still a task; its path is taken as written
            try:
                found = _io.safe_relative(
                    posixpath.normpath(posixpath.join(listed_base, item)),
                    source=f"{source.rstrip('/')}/{list_file}",
                    location=number,
                )
            except ParseError as exc:
                collector.bad(exc.path, exc.location, exc.reason)
                continue
            layout.missing.add(found)
        found_images.append(found)
    return found_images


def _read_label_files(fs: Any, root: str, wanted: list[tuple[str, str]]) -> pa.Table:
    """(image, label path, content) of every label file that exists."""
    paths = [f"{root}/{label}" for _, label in wanted]
    if _io.is_local(fs):
        contents = _io.read_local_files(paths)
    else:
        fetched = fs.cat(paths) if paths else {}
        contents = [fetched[p] for p in paths]
    return pa.table(
        {
            "image": pa.array([image for image, _ in wanted], pa.string()),
            "label_file": pa.array([label for _, label in wanted], pa.string()),
            "content": pa.array(contents, pa.binary()),
        }
    )


# ====================================================================== parsing


_FILES_PER_BATCH = 16384


def _label_lines(
    con: duckdb.DuckDBPyConnection, files: pa.Table, where: str, collector: SkipCollector
) -> pa.Table:
    """The label files' lines that are not blank: image, label_file, lineno, line (trimmed),
    the count ``n`` and values ``v`` of its whitespace-separated tokens (split as Python's
    ``str.split()`` does for ASCII whitespace, as Ultralytics reads lines), its first token
    and its first token that is not a finite number (for messages).

    Arrow's string kernels do this in 0.7 s for a million lines; DuckDB's
    ``regexp_split_to_array`` took 2.1 s for the tokens alone."""
    contents = files.column("content").combine_chunks()
    text = contents.view(pa.string())  # the same bytes, checked below: no copy
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        text = _decoded_text(contents, files.column("label_file"), where, collector)
    # each step only where needed: a copy of every file costs memory that Arrow's
    # allocator keeps for later (a million lines: about 30 MB a copy)
    if pc.any(pc.starts_with(text, "\ufeff")).as_py():  # a byte-order mark is not data
        text = pc.utf8_ltrim(text, characters="\ufeff")
    if pc.any(pc.match_substring(text, "\r")).as_py():  # CR LF and a lone CR end lines
        text = pc.replace_substring(pc.replace_substring(text, "\r\n", "\n"), "\r", "\n")
    lines = pc.split_pattern(text, "\n")
    owner = pc.list_parent_indices(lines)
    flat = pc.ascii_trim_whitespace(pc.list_flatten(lines))
    # a line's number: its position among all lines, less its file's first position
    position = con.sql(f"SELECT range FROM range({len(flat)})").to_arrow_table().column(0)
    first = pc.take(lines.offsets.cast(pa.int64()), owner)
    lineno = pc.add(pc.subtract(position, first), 1)
    keep = pc.not_equal(flat, "")
    owner, flat, lineno = (pc.filter(column, keep) for column in (owner, flat, lineno))
    tokens = pc.ascii_split_whitespace(flat)
    values = _token_values(con, tokens)
    return pa.table(
        {
            # the file's names as dictionaries indexed by the line's file: not copied
            "image": pa.DictionaryArray.from_arrays(owner, files.column("image").combine_chunks()),
            "label_file": pa.DictionaryArray.from_arrays(
                owner, files.column("label_file").combine_chunks()
            ),
            "lineno": lineno,
            "line": flat,
            "n": pc.cast(pc.list_value_length(tokens), pa.int64()),
            "v": values,
            # for messages only: the class token, and the first token that is no number
            "first_token": pc.list_element(tokens, 0),
            "bad_value": _first_bad_tokens(tokens, values),
        }
    )


def _token_values(con: duckdb.DuckDBPyConnection, tokens: pa.Array) -> pa.Array:
    """Each line's tokens as numbers, a token that is not one being NULL (DuckDB's
    TRY_CAST).

    Arrow's cast parses a batch of valid lines about 5× faster than DuckDB, but raises at
    the first bad token; such a batch is cast by DuckDB. The two agree on every token
    both accept (a test checks), so the result does not depend on the path."""
    target = pa.list_(pa.float64())
    try:
        return pc.cast(tokens, target)
    except pa.ArrowInvalid:
        con.register("yolo_tokens", pa.table({"tokens": tokens}))
        try:
            cast = con.sql("SELECT TRY_CAST(tokens AS DOUBLE[]) AS v FROM yolo_tokens")
            return cast.to_arrow_table().column(0).combine_chunks().cast(target)
        finally:
            con.unregister("yolo_tokens")


def _first_bad_tokens(tokens: pa.Array, values: pa.Array) -> pa.Array:
    """Per line, its first token that is not a finite number (NULL when all are)."""
    flat_values = pc.list_flatten(values)
    bad = pc.fill_null(pc.invert(pc.is_finite(flat_values)), True)
    if not pc.any(bad).as_py():
        return pa.nulls(len(tokens), pa.string())
    at = pc.indices_nonzero(bad)
    lines = pc.take(pc.list_parent_indices(values), at)
    # flattened values keep line order: a line's first bad token is where its index appears first
    first = pa.concat_arrays([pa.array([True]), pc.not_equal(lines[1:], lines[:-1])])
    lines, at = pc.filter(lines, first), pc.filter(at, first)
    line_has_bad = pc.is_in(counting(len(tokens)), value_set=lines)
    return pc.replace_with_mask(
        pa.nulls(len(tokens), pa.string()), line_has_bad, pc.take(pc.list_flatten(tokens), at)
    )


def _decoded_text(
    contents: pa.Array, label_files: pa.ChunkedArray, where: str, collector: SkipCollector
) -> pa.Array:
    """The contents as text, some file not being UTF-8: each line that is not is reported
    (and skipped, blank, with ``errors="skip"``)."""
    texts = []
    for label_file, data in zip(label_files.to_pylist(), contents.to_pylist(), strict=True):
        try:
            texts.append(data.decode("utf-8"))
            continue
        except UnicodeDecodeError:
            pass
        lines = []
        for number, line in enumerate(data.split(b"\n"), 1):
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                collector.bad(where, f"{label_file}:{number}", "the line is not UTF-8 text")
                lines.append("")
        texts.append("\n".join(lines))
    return pa.array(texts, pa.string())


def _expected_counts(variant: str, kpt_shape: Any, where: str) -> tuple[str, str, int]:
    """SQL condition on ``n`` (token count) for a valid line, its description, and the
    number of geometry values (for telling a confidence column apart)."""
    if variant == "detect":
        return "n IN (5, 6)", "5 values (class cx cy w h), or 6 with a confidence", 4
    if variant == "obb":
        return "n IN (9, 10)", "9 values (class and 4 corners), or 10 with a confidence", 8
    if variant == "segment":
        return "n >= 7", "a class and at least 3 points (7+ values)", -1
    if not (isinstance(kpt_shape, list) and len(kpt_shape) == 2 and kpt_shape[1] in (2, 3)):
        raise ParseError(
            where, "kpt_shape", f"pose needs kpt_shape: [K, 2 or 3] in data.yaml, got {kpt_shape!r}"
        )
    values = 4 + kpt_shape[0] * kpt_shape[1]
    return (
        f"n IN ({values + 1}, {values + 2})",
        f"{values + 1} values (class, box, {kpt_shape[0]} × {kpt_shape[1]} keypoint values), or one more with a confidence",
        values,
    )


def parse_labels(
    layout: _Layout,
    contents: pa.Table,
    variant: str,
    source: str,
    collector: SkipCollector,
    *,
    kpt_shape: Any = None,
) -> Tables:
    """Label file contents → the four tables."""
    where = source.rstrip("/")
    valid_count, described, geometry_values = _expected_counts(variant, kpt_shape, where)
    dims = kpt_shape[1] if variant == "pose" else 0
    names = pa.table(
        {
            "class": pa.array(list(layout.names), pa.int64()),
            "name": pa.array(list(layout.names.values()), pa.string()),
        }
    )
    image_table = pa.table(
        {
            "image": pa.array(list(layout.images), pa.string()),
            "split": pa.array(list(layout.images.values()), pa.string()),
        }
    )
    with connection() as con:
        install_number_macros(con)
        install_asset_macros(con)
        con.register("yolo_names", names)
        con.register("yolo_files", contents)
        con.register("yolo_images", image_table)
        try:
            return _parse(
                con,
                contents,
                layout,
                variant,
                where,
                collector,
                valid_count,
                described,
                geometry_values,
                dims,
            )
        finally:
            for name in ("yolo_names", "yolo_files", "yolo_images"):
                con.unregister(name)
            con.execute("DROP TABLE IF EXISTS yolo_checked")


def _parse(
    con: duckdb.DuckDBPyConnection,
    contents: pa.Table,
    layout: _Layout,
    variant: str,
    where: str,
    collector: SkipCollector,
    valid_count: str,
    described: str,
    geometry_values: int,
    dims: int,
) -> Tables:
    has_names = bool(layout.names)
    # task ids: the image path without extension; two images sharing one label file clash
    clash = con.sql(
        """
        SELECT image, first FROM (
            SELECT image, regexp_replace(image, '\\.[^./]*$', '') AS stem,
                   first_value(image) OVER (PARTITION BY regexp_replace(image, '\\.[^./]*$', '') ORDER BY image) AS first
            FROM yolo_images) WHERE image <> first ORDER BY image
        """
    ).fetchall()
    for image, first in clash:
        collector.bad(where, image, f"{image} and {first} share one label file; rename one of them")
    clashing = {image for image, _ in clash}
    # A batch of files at a time: the lines' columns of all files at once, and the
    # copies made to build them, held 300 MB more at a million lines.
    for start in range(0, max(contents.num_rows, 1), _FILES_PER_BATCH):
        batch = contents.slice(start, _FILES_PER_BATCH)
        con.register("yolo_lines", _label_lines(con, batch, where, collector))
        lines = "SELECT * FROM yolo_lines"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE yolo_checked AS {lines}"
            if start == 0
            else f"INSERT INTO yolo_checked {lines}"
        )
        con.unregister("yolo_lines")
    checks = [
        (f"NOT ({valid_count})", f"'expected {described}, got ' || n"),
        ("bad_value IS NOT NULL", "'value ' || bad_value || ' is not a number'"),
        ("v[1] <> floor(v[1]) OR v[1] < 0", "'class ' || first_token || ' is not a class index'"),
    ]
    if has_names:
        checks.append(
            (
                "v[1]::BIGINT NOT IN (SELECT class FROM yolo_names)",
                f"'class ' || first_token || ' is not in the class names ({len(layout.names)} classes)'",
            )
        )
    geometry = (
        f"v[2:{geometry_values + 1}]"
        if geometry_values > 0
        else "v[2:CASE WHEN n % 2 = 1 THEN n ELSE n - 1 END]"
    )
    if variant == "pose":
        box = "v[2:5]"
        keypoint_coords = (
            f"list_filter(v[6:{geometry_values + 1}], lambda x, i: (i - 1) % {dims} < 2)"
        )
        in_range = f"list_bool_and(list_transform({box} || {keypoint_coords}, lambda x: x >= 0 AND x <= 1))"
    else:
        in_range = f"list_bool_and(list_transform({geometry}, lambda x: x >= 0 AND x <= 1))"
    checks.append(
        (
            f"NOT coalesce({in_range}, TRUE)",
            "'coordinates must be normalized to [0, 1]: ' || trim(line)",
        )
    )
    if variant == "segment":
        checks.append(("len(" + geometry + ") % 2 = 1", "'a polygon needs x y pairs'"))
    # rows are told apart by their rowid and put in file order only when bad (numbering
    # every line in that order sorted a million rows with all their values)
    rows = con.sql(
        "SELECT rowid, label_file || ':' || lineno AS location, msg FROM (SELECT rowid, label_file, lineno, CASE "
        + " ".join(f"WHEN {c} THEN {m}" for c, m in checks)
        + " END AS msg FROM yolo_checked) WHERE msg IS NOT NULL ORDER BY label_file, lineno"
        + (" LIMIT 1" if collector.errors == "raise" else "")
    ).fetchall()
    for _, location, message in rows:
        collector.bad(where, location, message)
    if rows:
        con.execute(
            f"DELETE FROM yolo_checked WHERE rowid IN ({', '.join(str(r[0]) for r in rows)})"
        )

    if not has_names:
        top = con.sql("SELECT max(v[1])::BIGINT FROM yolo_checked").fetchall()[0][0]
        layout.names_generated = True
        layout.names = {index: str(index) for index in range((top or -1) + 1)}
        con.register(
            "yolo_names",
            pa.table(
                {
                    "class": pa.array(list(layout.names), pa.int64()),
                    "name": pa.array(list(layout.names.values()), pa.string()),
                }
            ),
        )
    images = con.sql(
        "SELECT image, split, regexp_replace(image, '\\.[^./]*$', '') AS task_id FROM yolo_images ORDER BY image"
    ).to_arrow_table()
    if clashing:
        images = images.filter(
            pc.invert(pc.is_in(images.column("image"), pa.array(sorted(clashing))))
        )
    con.register("yolo_tasks", images)
    try:
        tasks = con.sql(
            """
            SELECT task_id, image AS uri, annostore_asset_key(image) AS asset_key, NULL AS text,
                   NULL::INTEGER AS width, NULL::INTEGER AS height, split, NULL AS data
            FROM yolo_tasks ORDER BY task_id
            """
        ).to_arrow_table()
        confidence_at = geometry_values + 2 if geometry_values > 0 else None
        score = (
            f"CASE WHEN n = {confidence_at} THEN v[{confidence_at}] END"
            if confidence_at
            else "CASE WHEN n % 2 = 0 THEN v[n] END"
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE yolo_regions AS
            SELECT t.task_id,
                   {"coalesce(nm.name, v[1]::BIGINT::VARCHAR)" if not has_names else "nm.name"} AS label,
                   {score} AS score, {geometry} AS g{", v" if variant == "pose" else ""}
            FROM yolo_checked c JOIN yolo_tasks t USING (image)
            LEFT JOIN yolo_names nm ON nm.class = v[1]::BIGINT
            """
        )
        # the lines' text and values are not needed past here: not held beside the sort below
        con.execute("DROP TABLE yolo_checked")
        annotations = con.sql(
            """
            SELECT t.task_id AS annotation_id, t.task_id,
                   CASE WHEN bool_or(r.score IS NOT NULL) THEN 'prediction' ELSE 'annotation' END AS kind
            FROM yolo_files f JOIN yolo_tasks t USING (image)
            LEFT JOIN yolo_regions r ON r.task_id = t.task_id
            GROUP BY t.task_id ORDER BY t.task_id
            """
        ).to_arrow_table()
        if variant == "detect":
            shape = """'bbox' AS type, g[1] - g[3] / 2 AS x, g[2] - g[4] / 2 AS y, g[3] AS w, g[4] AS h,
                       NULL::DOUBLE[][] AS polygons, NULL::DOUBLE[] AS keypoints"""
        elif variant in ("segment", "obb"):
            shape = """'polygon' AS type, NULL::DOUBLE AS x, NULL::DOUBLE AS y, NULL::DOUBLE AS w,
                       NULL::DOUBLE AS h, [g] AS polygons, NULL::DOUBLE[] AS keypoints"""
        else:
            points = f"v[6:{geometry_values + 1}]"
            if dims == 3:
                triples = points
            else:
                triples = (
                    f"flatten(list_transform(range(len({points}) // 2), lambda k: "
                    f"[{points}[2 * k + 1], {points}[2 * k + 2], "
                    f"CASE WHEN {points}[2 * k + 1] = 0 AND {points}[2 * k + 2] = 0 THEN 0 ELSE 2 END]))"
                )
            shape = f"""'keypoints' AS type, v[2] - v[4] / 2 AS x, v[3] - v[5] / 2 AS y, v[4] AS w,
                       v[5] AS h, NULL::DOUBLE[][] AS polygons, {triples}::DOUBLE[] AS keypoints"""
        if variant == "obb":
            extra = sql_string('{"yolo": "obb"}')
        elif variant in ("detect", "pose"):
            # the few centres that the writer's centre(x, w) would not give back exactly
            # (17-digit values) are kept, so YOLO → store → YOLO reproduces every digit
            extra = (
                "CASE WHEN centre(x, w) IS DISTINCT FROM g[1] OR centre(y, h) IS DISTINCT FROM g[2] "
                "THEN json_object('yolo_centre', [g[1], g[2]])::VARCHAR END"
            )
        else:
            extra = "NULL"
        regions = con.sql(
            f"""
            WITH s AS (SELECT task_id AS annotation_id, label, score, g, {shape} FROM yolo_regions),
            r AS (
                SELECT *, left(md5(concat_ws('|', coalesce(label, ''), coalesce(x::VARCHAR, ''),
                           coalesce(y::VARCHAR, ''), coalesce(w::VARCHAR, ''), coalesce(h::VARCHAR, ''),
                           coalesce(polygons::VARCHAR, ''), coalesce(keypoints::VARCHAR, ''),
                           coalesce(score::VARCHAR, ''))), 16) AS content
                FROM s
            )
            SELECT annotation_id, content AS region_id,
                   type, label, score, x, y, w, h, NULL::DOUBLE AS rotation, polygons, keypoints,
                   NULL AS mask, NULL::BIGINT AS start, NULL::BIGINT AS "end", NULL AS value,
                   NULL AS parent_id,
                   {extra} AS extra
            FROM r
            ORDER BY annotation_id, region_id, extra
            """
        ).to_arrow_table()
        regions = _number_repeated_ids(regions)
    finally:
        con.unregister("yolo_tasks")
        con.execute("DROP TABLE IF EXISTS yolo_regions")
        con.execute("DROP TABLE IF EXISTS yolo_checked")
    label_rows = [
        {"label": name, "label_id": index} for index, name in sorted(layout.names.items())
    ]
    metadata = _yolo_metadata(layout, variant)
    return Tables(
        tasks=tasks,
        annotations=annotations,
        regions=regions,
        labels=pa.Table.from_pylist(label_rows) if label_rows else None,
        metadata=metadata,
    )


def _number_repeated_ids(regions: pa.Table) -> pa.Table:
    """Regions sorted by annotation and content id, with the second, third, … region of the
    same content in an annotation given ``-1``, ``-2``, … after its id.

    Repeats sit next to each other in that order, so they are found by comparing each row
    with the one before (a SQL window partitioned by annotation and content sorted the
    million rows again: 1 s of a 2.3 s statement at 1M regions).
    """
    if regions.num_rows < 2:
        return regions
    annotations = regions.column("annotation_id").combine_chunks()
    ids = regions.column("region_id").combine_chunks()
    before, after = slice(0, len(ids) - 1), slice(1, None)
    repeats = pc.and_(
        pc.equal(annotations[after], annotations[before]), pc.equal(ids[after], ids[before])
    )
    if not pc.any(repeats).as_py():
        return regions
    # a row's number in its run of repeats: its position minus the position the run starts at
    positions = counting(len(ids))
    repeated = pa.concat_arrays([pa.array([False]), repeats])
    starts = pc.cumulative_max(pc.if_else(repeated, 0, positions))
    occurrence = pc.subtract(positions, starts)
    numbered = pc.if_else(
        pc.greater(occurrence, 0),
        pc.binary_join_element_wise(ids, pc.cast(occurrence, pa.string()), "-"),
        ids,
    )
    regions = regions.set_column(regions.schema.get_field_index("region_id"), "region_id", numbered)
    if pc.max(occurrence).as_py() >= 10:
        # "x-10" sorts before "x-2": the keys go back into byte order
        regions = regions.sort_by([("annotation_id", "ascending"), ("region_id", "ascending")])
    return regions


def _yolo_metadata(layout: _Layout, variant: str) -> dict[str, Any]:
    kept = {k: v for k, v in layout.config.items() if k not in ("names", "nc")}
    details: dict[str, Any] = {"variant": variant}
    if layout.config_name:
        details["config_file"] = layout.config_name
        if not layout.config_name.endswith(".data"):
            details["config"] = kept
    if layout.names_file:
        details["names_file"] = layout.names_file
    return {"yolo": details}


def _classify_tables(layout: _Layout) -> Tables:
    tasks, annotations, regions = [], [], []
    names = {name: index for index, name in layout.names.items()}
    for image in sorted(layout.images):
        task_id = image.rsplit(".", 1)[0]
        tasks.append({"task_id": task_id, "uri": image, "split": layout.images[image]})
        annotations.append({"annotation_id": task_id, "task_id": task_id})
        label = layout.classes_from_folders[image]
        regions.append(
            {"annotation_id": task_id, "region_id": "class", "type": "class", "label": label}
        )
        names.setdefault(label, len(names))
    labels = [
        {"label": name, "label_id": index}
        for name, index in sorted(names.items(), key=lambda kv: kv[1])
    ]
    return Tables(
        tasks=pa.Table.from_pylist(tasks) if tasks else None,
        annotations=pa.Table.from_pylist(annotations) if annotations else None,
        regions=pa.Table.from_pylist(regions) if regions else None,
        labels=pa.Table.from_pylist(labels) if labels else None,
        metadata={"yolo": {"variant": "classify"}},
    )


# ====================================================================== rendering


def render(
    tables: Tables,
    report: Report,
    *,
    variant: str = "detect",
    policy: str = "latest",
    annotator: str | None = None,
    image_sizes: dict[str, tuple[int, int]] | None = None,
) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    """The tables → (relative path, content) of every file of a YOLO folder, and
    (image uri, path in the folder) of every task's image."""
    with connection() as con:
        install_number_macros(con)
        register_tables(con, tables)
        try:
            return _render(con, tables, report, variant, policy, annotator, image_sizes or {})
        finally:
            unregister_tables(con)
            for table in ("selected", "classes", "yolo_out", "yolo_sizes"):
                con.execute(f"DROP TABLE IF EXISTS {table}")


def _image_out_sql(t: str = "t.", keep_layout: bool = False) -> str:
    """SQL: where a task's image goes in the output folder. Read from YOLO
    (``keep_layout``), a relative path keeps its place, so Darknet layouts stay as they
    were; otherwise a relative path with an ``images/`` folder keeps its place, another
    relative path goes under ``images/<split>/``, and a URL or an absolute path becomes
    ``images/<split>/<file name>``."""
    relative = (
        f"({t}uri IS NOT NULL AND NOT contains({t}uri, '://') AND NOT starts_with({t}uri, '/'))"
    )
    under_images = f"'images/' || coalesce({t}split || '/', '')"
    name = (
        f"regexp_replace(coalesce(regexp_replace(coalesce({t}asset_key, {t}uri), '[?#].*$', ''), "
        f"{t}task_id), '^.*/', '')"
    )
    if keep_layout:
        return f"CASE WHEN {relative} THEN {t}uri ELSE {under_images} || {name} END"
    return (
        f"CASE WHEN {relative} AND contains('/' || {t}uri, '/images/') THEN {t}uri "
        f"WHEN {relative} THEN {under_images} || {t}uri ELSE {under_images} || {name} END"
    )


def _label_file_sql(t: str = "t.", keep_layout: bool = False) -> str:
    """SQL: a task's label file in the output folder (Ultralytics' image → label rule)."""
    return rf"""
        ltrim(regexp_replace(
            regexp_replace('/' || ({_image_out_sql(t, keep_layout)}), '^(.*)/images/', '\1/labels/'),
            '\.[^./]*$', '') || '.txt', '/')
    """


def _render(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    report: Report,
    variant: str,
    policy: str,
    annotator: str | None,
    image_sizes: dict[str, tuple[int, int]],
) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    annotation_selection(con, report, policy, annotator)
    geometry_labels(con)
    _class_indexes(con, report, from_yolo="yolo" in tables.metadata)
    keep_layout = "yolo" in tables.metadata
    predictions = policy == "predictions"
    image_sizes_table(con, "yolo_sizes", image_sizes)
    # paths from the data must stay inside the output folder
    bad_uri = con.sql(
        "SELECT task_id, uri FROM tasks WHERE uri IS NOT NULL AND NOT contains(uri, '://') AND "
        "NOT starts_with(uri, '/') AND regexp_matches('/' || uri || '/', '/\\.\\./') LIMIT 1"
    ).fetchall()
    if bad_uri:
        raise AnnostoreError(
            f"task {bad_uri[0][0]!r}: image path {bad_uri[0][1]!r} would place its label file "
            "outside the output folder"
        )
    allowed = {
        "detect": "('bbox', 'polygon', 'keypoints', 'ellipse')",
        "segment": "('polygon', 'bbox')",
        "pose": "('keypoints',)",
        "obb": "('bbox', 'polygon')",
    }[variant]
    # only box lines print a centre (detect and pose)
    kept_centre = (
        "TRY_CAST(r.extra->'$.yolo_centre' AS DOUBLE[])"
        if variant in ("detect", "pose")
        else "NULL::DOUBLE[]"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE yolo_out AS
        -- only what the lines print and the report counts: not the regions' ids, labels,
        -- masks and extra text, which the label lines' grouping would hold beside them
        SELECT r.type, r.x, r.y, r.w, r.h, r.rotation, r.polygons, r.keypoints, r.score,
               r.value IS NOT NULL AS transcribed, s.grp,
               coalesce(t.width, z.sw)::DOUBLE AS iw, coalesce(t.height, z.sh)::DOUBLE AS ih,
               c.class_index AS class,
               coalesce(r.rotation, 0) % 360 <> 0 AS rotated,
               coalesce(TRY_CAST(r.extra->>'$.iscrowd' AS BIGINT), 0) = 1 AS crowd,
               {kept_centre} AS kept_centre,
               {_label_file_sql(keep_layout=keep_layout)} AS label_file
        FROM regions r JOIN selected s USING (annotation_id)
        JOIN tasks t ON t.task_id = s.task_id
        LEFT JOIN yolo_sizes z ON z.task_id = t.task_id
        LEFT JOIN classes c ON c.label = r.label
        """
    )
    con.execute("DROP TABLE yolo_sizes")

    def count(condition: str) -> int:
        return con.sql(f"SELECT count(*) FROM yolo_out WHERE {condition}").fetchall()[0][0]

    report.drop("crowd regions (iscrowd) not exported (YOLO has no crowd flag)", count("crowd"))
    for region_type, n in con.sql(
        f"SELECT type, count(*) FROM yolo_out WHERE NOT crowd AND type NOT IN {allowed} GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        report.drop(f"{region_type} regions (YOLO {variant} has no place for them)", n)
    keep = f"NOT crowd AND type IN {allowed}"
    if variant == "detect":
        report.approximate(
            "polygons written as their bounding box", count(f"{keep} AND type = 'polygon'")
        )
        report.drop(
            "keypoints dropped (only their boxes written)",
            count(f"{keep} AND type = 'keypoints' AND keypoints IS NOT NULL"),
        )
        report.approximate(
            "ellipses written as their bounding box", count(f"{keep} AND type = 'ellipse'")
        )
    if variant in ("detect", "segment"):
        report.approximate(
            "rotated boxes written as their axis-aligned envelope (computed in pixels)",
            count(f"{keep} AND type = 'bbox' AND rotated"),
        )
    if variant == "obb":
        report.approximate(
            "polygons that are not 4-point written as their bounding box corners",
            count(f"{keep} AND type = 'polygon' AND (len(polygons) <> 1 OR len(polygons[1]) <> 8)"),
        )
    report.drop("transcriptions on shapes dropped", count(f"{keep} AND transcribed"))
    if not predictions:
        report.drop(
            "region scores dropped (only predictions carry a confidence)",
            count(f"{keep} AND score IS NOT NULL"),
        )
    need_pixels = count(f"{keep} AND rotated AND (iw IS NULL OR ih IS NULL)")
    if need_pixels:
        raise AnnostoreError(
            f"{need_pixels} rotated boxes are on images of unknown size; rotating needs pixels: pass "
            "image_root=<folder of the images> (--write-option image_root=...)"
        )
    multi_ring = count(f"{keep} AND type = 'polygon' AND len(polygons) > 1")
    if variant == "segment":
        report.approximate("multi-part polygons joined into one ring per object", multi_ring)

    kpt_shape = _kpt_shape(con, tables) if variant == "pose" else None
    line = _line_sql(variant, predictions, kpt_shape[1] if kpt_shape else 3)
    body = con.sql(
        f"""
        WITH shaped AS (SELECT *, {_envelope_sql()} AS box FROM yolo_out WHERE {keep})
        SELECT grp, label_file, string_agg(line, chr(10) ORDER BY line) || chr(10) AS content
        FROM (SELECT grp, label_file, {line} AS line FROM shaped)
        GROUP BY grp, label_file
        """
    ).fetchall()
    # annotated tasks without regions get an empty file (a background image)
    empty = con.sql(
        f"""
        SELECT DISTINCT s.grp, {_label_file_sql(keep_layout=keep_layout)} AS label_file
        FROM selected s JOIN tasks t USING (task_id)
        """
    ).fetchall()
    paths_used = con.sql(
        f"""
        SELECT label_file, count(DISTINCT task_id) AS n, min(task_id), max(task_id)
        FROM (SELECT t.task_id, {_label_file_sql(keep_layout=keep_layout)} AS label_file FROM selected s JOIN tasks t USING (task_id))
        GROUP BY label_file HAVING n > 1 LIMIT 1
        """
    ).fetchall()
    if paths_used:
        raise AnnostoreError(
            f"tasks {paths_used[0][2]!r} and {paths_used[0][3]!r} would share the label file "
            f"{paths_used[0][0].lstrip('/')}; YOLO maps one image name to one label file"
        )
    unlabeled = con.sql("SELECT count(*) FROM tasks ANTI JOIN selected USING (task_id)").fetchall()[
        0
    ][0]
    if unlabeled:
        report.notes.append(
            f"{unlabeled} unlabeled tasks have no label file (YOLO's way of saying unlabeled)"
        )
    files: dict[tuple[str, str], bytes] = {(g, p): b"" for g, p in empty}
    for group, path, content in body:
        files[(group, path)] = content.encode("utf-8")
    names = dict(con.sql("SELECT class_index, label FROM classes ORDER BY class_index").fetchall())
    listed = con.sql(
        f"""
        SELECT coalesce(split, '') AS split, list({_image_out_sql(keep_layout=keep_layout)} ORDER BY {_image_out_sql(keep_layout=keep_layout)}) AS images
        FROM tasks t GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    lists = {split: images for split, images in listed}
    if "" in lists and len(lists) > 1:
        report.notes.append(
            f"{len(lists[''])} tasks without a split are listed with the training images"
        )
    output: list[tuple[str, bytes]] = []
    groups = sorted({g for g, _ in files}) or [""]
    for group in groups:
        prefix = f"{group}/" if group else ""
        config, list_files = _data_yaml(tables, names, lists, kpt_shape)
        output.append((prefix + "data.yaml", dump_yaml(config).encode("utf-8")))
        output.extend((prefix + name, content) for name, content in list_files)
        output.extend(
            (prefix + path, content) for (g, path), content in sorted(files.items()) if g == group
        )
    report.counts = {
        "label files": sum(1 for (g, _p) in files),
        "classes": len(names),
        "regions": sum(content.count(b"\n") for content in files.values()),
    }
    images = con.sql(
        f"SELECT uri, {_image_out_sql(keep_layout=keep_layout)} FROM tasks t WHERE uri IS NOT NULL ORDER BY 2"
    ).fetchall()
    return output, images


def _class_indexes(con: duckdb.DuckDBPyConnection, report: Report, *, from_yolo: bool) -> None:
    """Add ``class_index`` to ``classes``. A label set read from YOLO keeps its indexes;
    ids that are exactly 0..K-1 are kept too; any other ids (COCO's 1..90) are not class
    indexes, so classes are numbered 0.. in label-set order."""
    usable, contiguous = con.sql(
        """
        SELECT coalesce(bool_and(label_id IS NOT NULL AND label_id >= 0), TRUE)
                   AND count(DISTINCT label_id) = count(*),
               coalesce(min(label_id) = 0 AND max(label_id) = count(*) - 1, TRUE)
        FROM classes
        """
    ).fetchall()[0]
    keep = usable and (from_yolo or contiguous)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE classes AS SELECT *, "
        + ("label_id" if keep else "position")
        + " AS class_index FROM classes"
    )
    if not keep:
        renumbered = con.sql(
            "SELECT count(*) FROM classes WHERE label_id IS DISTINCT FROM position"
        ).fetchall()[0][0]
        if renumbered:
            report.notes.append(
                "label ids are not YOLO class indexes: classes numbered 0.. in label-set order"
            )


def _kpt_shape(con: duckdb.DuckDBPyConnection, tables: Tables) -> list[int]:
    counts = con.sql(
        "SELECT DISTINCT len(keypoints) // 3 FROM yolo_out WHERE type = 'keypoints' AND keypoints IS NOT NULL"
    ).fetchall()
    if len(counts) > 1:
        raise AnnostoreError(
            f"YOLO pose needs the same number of keypoints on every object; found {sorted(c[0] for c in counts)}"
        )
    count = counts[0][0] if counts else 0
    previous = tables.metadata.get("yolo", {}).get("config", {}).get("kpt_shape")
    dims = (
        previous[1]
        if isinstance(previous, list) and len(previous) == 2 and previous[0] == count
        else 3
    )
    return [count, dims]


def _data_yaml(
    tables: Tables, names: dict[int, str], lists: dict[str, list[str]], kpt_shape: Any
) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """data.yaml and the image list files it names (one per split, ``./`` paths)."""
    previous = tables.metadata.get("yolo", {}).get("config", {})
    config: dict[str, Any] = {
        k: v
        for k, v in previous.items()
        if k not in ("names", "nc", "kpt_shape", "path", "train", "val", "test", "valid")
    }
    list_files = []
    for split, images in sorted(lists.items()):
        name = f"{split or 'images'}.txt"
        list_files.append((name, "".join(f"./{image}\n" for image in images).encode("utf-8")))
    splits = {split for split in lists if split}
    unsplit = lists.get("")
    if not splits:
        config["train"] = config["val"] = "images.txt"
    else:
        for split in sorted(splits):
            config[split] = (
                f"{split}.txt"
                if not (split == "train" and unsplit)
                else ["train.txt", "images.txt"]
            )
        if unsplit and "train" not in splits:
            config["train"] = "images.txt"
        if "val" not in config:
            # Ultralytics will not train without val: the training images serve
            config["val"] = config["train"]
    if kpt_shape is not None:
        config["kpt_shape"] = kpt_shape
    config["names"] = names
    return config, list_files


def _envelope_sql() -> str:
    """SQL: (x, y, w, h) normalized of a region's shape; a rotated box's envelope is
    computed in pixels."""
    cos, sin = "cos(radians(rotation))", "sin(radians(rotation))"
    xs = f"[0, w * iw * {cos}, w * iw * {cos} - h * ih * {sin}, - h * ih * {sin}]"
    ys = f"[0, w * iw * {sin}, w * iw * {sin} + h * ih * {cos}, h * ih * {cos}]"
    poly_x = "flatten(list_transform(polygons, lambda g: list_filter(g, lambda v, i: i % 2 = 1)))"
    poly_y = "flatten(list_transform(polygons, lambda g: list_filter(g, lambda v, i: i % 2 = 0)))"
    return f"""
        CASE
            WHEN type = 'bbox' AND rotated THEN [
                x + list_min({xs}) / iw, y + list_min({ys}) / ih,
                (list_max({xs}) - list_min({xs})) / iw, (list_max({ys}) - list_min({ys})) / ih]
            WHEN x IS NOT NULL THEN [x, y, w, h]
            WHEN polygons IS NOT NULL AND len(polygons) > 0 THEN [
                list_min({poly_x}), list_min({poly_y}),
                list_max({poly_x}) - list_min({poly_x}), list_max({poly_y}) - list_min({poly_y})]
        END
    """


def _line_sql(variant: str, predictions: bool, keypoint_dims: int = 3) -> str:
    """SQL: one label line of a region (``box`` is its normalized envelope)."""
    text = "lambda v: v::VARCHAR"
    conf = " || coalesce(' ' || score::VARCHAR, '')" if predictions else ""
    kept = "kept_centre"  # the centre a YOLO file gave, where the box would not give it back
    cx = f"CASE WHEN {kept}[1] - box[3] / 2 = box[1] THEN {kept}[1] ELSE centre(box[1], box[3]) END"
    cy = f"CASE WHEN {kept}[2] - box[4] / 2 = box[2] THEN {kept}[2] ELSE centre(box[2], box[4]) END"
    centre = f"({cx})::VARCHAR || ' ' || ({cy})::VARCHAR || ' ' || box[3]::VARCHAR || ' ' || box[4]::VARCHAR"
    if variant == "detect":
        return f"class::VARCHAR || ' ' || {centre}{conf}"
    if variant == "segment":
        ring = "CASE WHEN type = 'polygon' THEN flatten(polygons) ELSE [box[1], box[2], box[1] + box[3], box[2], box[1] + box[3], box[2] + box[4], box[1], box[2] + box[4]] END"
        return (
            f"class::VARCHAR || ' ' || array_to_string(list_transform({ring}, {text}), ' '){conf}"
        )
    if variant == "pose":
        if keypoint_dims == 3:  # visibility is an integer flag
            as_text = "lambda v, i: CASE WHEN i % 3 = 0 THEN v::BIGINT::VARCHAR ELSE v::VARCHAR END"
            points = f"array_to_string(list_transform(keypoints, {as_text}), ' ')"
        else:
            kept = "list_filter(keypoints, lambda v, i: i % 3 <> 0)"
            points = f"array_to_string(list_transform({kept}, {text}), ' ')"
        return f"class::VARCHAR || ' ' || {centre} || ' ' || {points}{conf}"
    # obb: four corners, clockwise from the box's corner, computed in pixels
    cos, sin = "cos(radians(coalesce(rotation, 0)))", "sin(radians(coalesce(rotation, 0)))"
    corners = (
        f"[x, y, x + w * iw * {cos} / iw, y + w * iw * {sin} / ih, "
        f"x + (w * iw * {cos} - h * ih * {sin}) / iw, y + (w * iw * {sin} + h * ih * {cos}) / ih, "
        f"x - h * ih * {sin} / iw, y + h * ih * {cos} / ih]"
    )
    unrotated = "[box[1], box[2], box[1] + box[3], box[2], box[1] + box[3], box[2] + box[4], box[1], box[2] + box[4]]"
    ring = (
        f"CASE WHEN type = 'polygon' AND len(polygons) = 1 AND len(polygons[1]) = 8 THEN polygons[1] "
        f"WHEN type = 'bbox' AND rotated THEN {corners} ELSE {unrotated} END"
    )
    return f"class::VARCHAR || ' ' || array_to_string(list_transform({ring}, {text}), ' '){conf}"
