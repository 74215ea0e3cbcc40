"""Atomic file writing and JSONL helpers shared by every stage.

Every file a stage writes goes to a temporary sibling first and is renamed into place, so a crash
never leaves a half-written output and never destroys the previous version. A temporary sibling is
hidden and carries its writer's process id (`.NAME.ltm-PID-RANDOM.tmp`): one left by a process that
was killed (kill -9 runs no cleanup) is removed by the next write into the same folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel


# A temporary sibling: .NAME.ltm-PID-RANDOM.tmp, or .NAME.ltm-PID-.old for the version atomic_dir replaces.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.ltm-(?P<pid>\d+)-[A-Za-z0-9_]*\.(?P<kind>tmp|old)")


# mkstemp and mkdtemp make owner-only temporaries (0600, 0700); the renamed output gets the modes
# an ordinary write would (0644 and 0755 under the usual umask). Read once: os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _prefix(path: Path) -> str:
    return f".{path.name}.ltm-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary siblings in `folder` whose writer is gone; return them. A replaced
    version (`.old`) is kept while its target is missing: it is then the only copy."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if not match or _alive(int(match["pid"])):
            continue
        if match["kind"] == "old" and not (folder / match["name"]).exists():
            continue
        stale = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to `path`, for a writer that opens its file itself; on success it is
    renamed over `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to `path`; on success rename it over `path`, on error remove it."""
    binary = "b" in mode
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if binary else encoding) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f"{_prefix(path)}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write records (pydantic models or dicts) as JSON lines, atomically; return the count."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            if isinstance(record, BaseModel):
                line = record.model_dump_json(by_alias=True)
            else:
                line = json.dumps(record, ensure_ascii=False)
            handle.write(line + "\n")
            count += 1
    return count


def write_json(path: str | Path, data: BaseModel | dict[str, Any]) -> None:
    text = data.model_dump_json(indent=2, by_alias=True) if isinstance(data, BaseModel) else json.dumps(data, ensure_ascii=False, indent=2)
    with atomic_write(path) as handle:
        handle.write(text + "\n")


def json_problem(exc: json.JSONDecodeError) -> str:
    """What is wrong with a JSON text and where, in words: "unterminated string starting at line 1, column 9"."""
    what = exc.msg[0].lower() + exc.msg[1:]
    return f"{what}{'' if what.endswith(' at') else ' at'} line {exc.lineno}, column {exc.colno}"


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield (line_number, record, error) for each non-blank line; a bad line yields an error, not an exception."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON: {json_problem(exc)}"
                continue
            if not isinstance(record, dict):
                yield number, None, "a line must hold a JSON object"
                continue
            yield number, record, None
