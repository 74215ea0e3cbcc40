"""User tags for documents: a `metadata.yaml` or `metadata.csv` beside the files, plus tags given on
the command line.

A sidecar looks like:

    defaults: {phase: logic}
    files:
      en/essay.md: {author: A. Pseudonym, phase: irony, title: "An essay"}
    table: {path: info.csv, columns: {title: name, year: year}}

Keys under `files` are paths relative to the sidecar's folder. `title` and `author` fill the
document's fields; every other key becomes a tag in `meta`. A table is a CSV file with columns
file, title, author, year, tags (`key=value; key=value`): `metadata.csv` is read by itself, any
other table through `table:`, whose `columns` map these fields onto the table's own column names.
A table without a file column is matched by title: the row names the file whose name (without
suffix) is the title, or the title in Latin letters (`Бедные люди` -> `bednye_lyudi.txt`), as
collections of Russian texts name their files. Entries under `files` win over the table's rows.

A file is matched by its path as given, not where a symbolic link points, so a folder of links
to texts kept elsewhere is tagged by the sidecar beside the links.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import yaml

SIDECAR_NAME = "metadata.yaml"
TABLE_NAME = "metadata.csv"
TABLE_FIELDS = ("file", "title", "author", "year", "tags")
# Russian letters as collections such as RusLit spell them in file names; the signs become `_`.
_LATIN = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                  "a b v g d e e zh z i i k l m n o p r s t u f kh ts ch sh shch _ y _ e yu ya".split()))


class SidecarError(ValueError):
    pass


def absolute(path: Path) -> Path:
    """`path` made absolute without following symbolic links (what sidecars are matched by)."""
    return Path(os.path.abspath(path))


def load_sidecar(path: Path, problems: list[str], tables: list[Path]) -> tuple[dict, dict[str, dict]]:
    """(defaults, {relative file: tags}) of a metadata.yaml or metadata.csv; rows of a table that
    cannot be used are appended to `problems` and the rest is kept; a table a metadata.yaml names is
    appended to `tables` (it is metadata, not a file of another type)."""
    if path.name == TABLE_NAME:
        return {}, load_table(path, {field: field for field in TABLE_FIELDS}, problems, required=False)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SidecarError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SidecarError(f"{path}: expected a mapping with 'defaults', 'files' and/or 'table'")
    defaults = raw.get("defaults") or {}
    files = raw.get("files") or {}
    table = raw.get("table")
    if not isinstance(defaults, dict) or not isinstance(files, dict):
        raise SidecarError(f"{path}: 'defaults' and 'files' must be mappings")
    rows: dict[str, dict] = {}
    if table is not None:
        if not isinstance(table, dict) or not isinstance(table.get("path"), str) or not isinstance(table.get("columns", {}), dict):
            raise SidecarError(f"{path}: 'table' must be a mapping like {{path: info.csv, columns: {{title: name}}}}")
        columns = table.get("columns") or {field: field for field in TABLE_FIELDS}
        unknown = sorted(set(columns) - set(TABLE_FIELDS))
        if unknown:
            raise SidecarError(f"{path}: table.columns: {unknown} are not fields; map {', '.join(TABLE_FIELDS)} onto the table's columns")
        tables.append(path.parent / table["path"])
        rows = load_table(tables[-1], {str(k): str(v) for k, v in columns.items()}, problems, required=True)
    return defaults, {**rows, **{str(k): dict(v or {}) for k, v in files.items()}}


def load_table(path: Path, columns: dict[str, str], problems: list[str], required: bool) -> dict[str, dict]:
    """{relative file: tags} from a CSV table whose column `columns[field]` holds each field (every
    named column must be there when `required`; else the fields whose column is there are read)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            lines = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SidecarError(f"{path}: cannot read the table: {exc}") from None
    missing = [column for column in columns.values() if column not in header]
    if required and missing:
        raise SidecarError(f"{path}: no column {missing} (the table has {header})")
    columns = {field: column for field, column in columns.items() if column in header}
    if "file" not in columns and "title" not in columns:
        raise SidecarError(f"{path}: a table needs a file or a title column to find its files (it has {header})")
    by_stem = {} if "file" in columns else _files_by_stem(path.parent)
    rows: dict[str, dict] = {}
    for number, line in enumerate(lines, start=2):
        values = {field: (line.get(column) or "").strip() for field, column in columns.items()}
        if "file" in columns:
            name = values.pop("file")
            if not (path.parent / name).exists():
                problems.append(f"{path}: line {number}: no file {name} beside the table")
                continue
        else:
            title = values["title"]
            name = by_stem.get(title) or by_stem.get(_latin(title))
            if name is None:
                continue  # a catalogue may list more works than the folder holds
        tags = {field: value for field, value in values.items() if value and field != "tags"}
        if tags.get("year", "").isdigit():
            tags["year"] = int(tags["year"])
        for pair in filter(None, (p.strip() for p in values.get("tags", "").split(";"))):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                problems.append(f"{path}: line {number}: tags: expected key=value; key=value, got {pair!r}")
                continue
            tags[key.strip()] = value.strip()
        rows[name] = tags
    if lines and not rows and "file" not in columns:  # a mapping onto the wrong column matches nothing, silently otherwise
        problems.append(f"{path}: no row's title ({columns['title']!r} column) names a file here, as it is or in Latin letters")
    return rows


def _files_by_stem(folder: Path) -> dict[str, str]:
    return {p.stem: p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()}


def _latin(title: str) -> str:
    spelled = "".join(_LATIN.get(ch, ch) for ch in title.lower())
    return re.sub(r"[^a-z0-9_]+", "_", spelled).strip("_")


def tags_for(file: Path, sidecars: dict[Path, tuple[dict, dict[str, dict]]]) -> dict:
    """Merge the tags of every sidecar above `file`, nearest last so it wins; within a folder,
    metadata.yaml is read after metadata.csv and wins."""
    merged: dict = {}
    for folder in sorted(sidecars, key=lambda p: len(p.parts)):
        try:
            relative = absolute(file).relative_to(folder)
        except ValueError:
            continue
        defaults, files = sidecars[folder]
        merged.update(defaults)
        merged.update(files.get(relative.as_posix(), {}))
    return merged
