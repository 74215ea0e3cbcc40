"""Walk the given paths (files, folders, .zip archives), read each file with the reader for its
format, finish the documents (ids, hashes, language, tags) and skip duplicates.

A bad file never stops the batch: it becomes one line in the error list (and DOCS.errors.jsonl).
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ltm.formats import Document, Encoding
from ltm.ingest.dedup import DuplicateFinder
from ltm.ingest.lang import detect_language
from ltm.ingest.mojibake import MOJIBAKE_WARN_PAIRS, mojibake_pairs
from ltm.ingest.raw import RawDocument, ReaderError
from ltm.ingest.readers import SNIFF_BYTES, needs_content, reader_for
from ltm.ingest.sidecar import SIDECAR_NAME, TABLE_NAME, SidecarError, absolute, load_sidecar, tags_for
from ltm.io import write_jsonl

MAX_FILE_BYTES = 512 * 2**20  # larger files are refused rather than read into memory


@dataclass
class IngestError:
    path: str
    problem: str
    kind: str = "error"  # or "duplicate", or "warning" (the document is kept)

    def line(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class IngestResult:
    documents: list[Document] = field(default_factory=list)
    errors: list[IngestError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_read: int = 0


@dataclass
class Source:
    """One file to read: a real file, or a member of a zip archive (`path` is then `archive.zip/member`)."""

    path: str
    tag_path: Path  # the real file whose sidecar tags apply
    load: object  # () -> bytes


def _zip_members(archive: Path, result: IngestResult) -> Iterator[Source]:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = sorted(i.filename for i in zf.infolist() if not i.is_dir())
    except (zipfile.BadZipFile, OSError) as exc:
        result.errors.append(IngestError(str(archive), f"unreadable archive: {exc}"))
        return
    for member in names:
        if any(part.startswith(".") or part == "__MACOSX" for part in member.split("/")):
            continue

        def load(member: str = member) -> bytes:
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)

        def head(member: str = member) -> bytes:
            with zipfile.ZipFile(archive) as zf, zf.open(member) as handle:
                return handle.read(SNIFF_BYTES)

        if not _readable(member, head, result, f"{archive}/{member}"):
            continue
        yield Source(f"{archive}/{member}", archive, load)


def _readable(name: str, head, result: IngestResult, where: str) -> bool:
    """Whether ingest reads this file: by its suffix, or, when the suffix says nothing, by whether
    its first bytes are a chat export (a renamed conversations.json, a Nexus note without .md)."""
    try:
        readable = reader_for(name, head() if needs_content(name) else None) is not None
    except (OSError, zipfile.BadZipFile, RuntimeError) as exc:  # RuntimeError: an encrypted zip member
        result.errors.append(IngestError(where, f"cannot read: {exc}"))
        return False
    if not readable:
        result.skipped.append(where)
    return readable


def _discover(paths: list[Path], result: IngestResult) -> tuple[list[Source], dict]:
    sources: list[Source] = []
    sidecars: dict[Path, tuple[dict, dict]] = {}
    tables: list[Path] = []
    for root in paths:
        if not root.exists():
            result.errors.append(IngestError(str(root), "no such file or folder"))
            continue
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if root.is_dir() and any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            if path.name in (SIDECAR_NAME, TABLE_NAME):
                problems: list[str] = []
                try:
                    defaults, files = load_sidecar(path, problems, tables)
                except SidecarError as exc:
                    problems.append(str(exc))
                else:  # metadata.csv sorts first; metadata.yaml's entries win
                    earlier = sidecars.setdefault(absolute(path.parent), ({}, {}))
                    earlier[0].update(defaults)
                    for name, tags in files.items():
                        earlier[1][name] = {**earlier[1].get(name, {}), **tags}
                result.errors.extend(IngestError(str(path), problem.removeprefix(f"{path}: ")) for problem in problems)
            elif path.suffix.lower() == ".zip":
                sources.extend(_zip_members(path, result))
            elif _readable(path.name, lambda path=path: _head(path), result, str(path)):
                sources.append(Source(str(path), path, path.read_bytes))
    result.skipped = [name for name in result.skipped if Path(name) not in tables]
    return sources, sidecars


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(SNIFF_BYTES)


def _doc_id(source: str, part: str | None, sha256: str) -> str:
    stem = Path(source).stem + (f"-{part}" if part else "")
    stem = re.sub(r"[^\w-]+", "_", stem, flags=re.UNICODE).strip("_")[:80] or "doc"
    return f"{stem}-{sha256[:8]}"


def finish(raw: RawDocument, source: str, tags: dict) -> Document:
    """Add what every document has whatever its format: id, hash, language, user tags."""
    tags = dict(tags)
    sha256 = hashlib.sha256(raw.text.encode("utf-8")).hexdigest()
    return Document(
        id=_doc_id(source, raw.part, sha256),
        source=source + (f"#{raw.part}" if raw.part else ""),
        format=raw.format,
        title=str(tags.pop("title", None) or raw.title or Path(source).stem),
        author=tags.pop("author", None) or raw.author,
        lang=str(tags.pop("lang", None) or raw.lang or detect_language(raw.text)),
        text=raw.text,
        turns=raw.turns,
        sections=raw.sections,
        breaks=raw.breaks,
        notes=raw.notes,
        meta={**raw.meta, **tags},
        encoding=Encoding(detected=raw.encoding, repaired=raw.repaired),
        sha256=sha256,
    )


def read_source(source: Source) -> list[RawDocument]:
    data = source.load()
    if not data.strip():
        raise ReaderError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise ReaderError(f"larger than {MAX_FILE_BYTES // 2**20} MB")
    return reader_for(source.path, data[:SNIFF_BYTES])(data, source.path)


def ingest_paths(paths: list[str | Path], tags: dict | None = None, near_duplicate_threshold: float = 0.85,
                 on_progress: Callable[[int, int], None] | None = None) -> IngestResult:
    """Read every supported file under `paths`; sidecar tags first, then `tags` (CLI) on top.
    `on_progress(done, total)` is called before each file and after the last."""
    result = IngestResult()
    sources, sidecars = _discover([Path(p) for p in paths], result)
    duplicates = DuplicateFinder(near_duplicate_threshold)
    for done, source in enumerate(sources):
        if on_progress:
            on_progress(done, len(sources))
        try:
            raws = read_source(source)
        except ReaderError as exc:
            result.errors.append(IngestError(source.path, str(exc)))
            continue
        except (OSError, zipfile.BadZipFile) as exc:
            result.errors.append(IngestError(source.path, f"cannot read: {exc}"))
            continue
        file_tags = {**tags_for(source.tag_path, sidecars), **(tags or {})}
        for raw in raws:
            if not raw.text.strip():
                continue
            doc = finish(raw, source.path, file_tags)
            found = duplicates.check(doc.source, doc.sha256, doc.text)
            if found:
                what = "exact duplicate" if found.similarity == 1.0 else f"near duplicate (similarity {found.similarity:.2f})"
                result.errors.append(IngestError(doc.source, f"{what} of {found.kept}, skipped", kind="duplicate"))
                continue
            result.documents.append(doc)
            left = mojibake_pairs(doc.text)
            if left >= MOJIBAKE_WARN_PAIRS:
                result.errors.append(IngestError(doc.source, f"still looks like mojibake after repair ({left} character pairs such as "
                                                 "'–æ' or 'Ð¾'): check the file's encoding", kind="warning"))
            result.bytes_read += len(doc.text.encode("utf-8"))
    if on_progress:
        on_progress(len(sources), len(sources))
    return result


def write_documents(result: IngestResult, out: str | Path) -> Path:
    """Write DOCS.errors.jsonl beside `out` (always, so a rerun never shows stale errors) and, when
    anything was read, DOCS.jsonl itself; an ingest that read nothing leaves an earlier DOCS.jsonl alone."""
    out = Path(out)
    errors_path = out.with_name(out.name.removesuffix(".jsonl") + ".errors.jsonl")
    write_jsonl(errors_path, ({"path": e.path, "kind": e.kind, "problem": e.problem} for e in result.errors))
    if result.documents:
        write_jsonl(out, result.documents)
    return errors_path
