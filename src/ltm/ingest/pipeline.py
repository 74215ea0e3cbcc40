"""Walk the given paths, read every supported file into a Document, and report what failed.

A bad file never stops the batch: it becomes one line in the error list (and DOCS.errors.jsonl).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ltm.formats import Document, Encoding
from ltm.ingest.lang import detect_language
from ltm.ingest.sidecar import SIDECAR_NAME, SidecarError, load_sidecar, tags_for
from ltm.ingest.text import UnreadableText, read_text_file
from ltm.io import write_jsonl

READERS = {".txt": "text", ".md": "markdown", ".markdown": "markdown"}


@dataclass
class IngestError:
    path: str
    problem: str

    def line(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class IngestResult:
    documents: list[Document] = field(default_factory=list)
    errors: list[IngestError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _discover(paths: list[Path], result: IngestResult) -> tuple[list[Path], dict]:
    files: list[Path] = []
    sidecars: dict[Path, tuple[dict, dict]] = {}
    for root in paths:
        if not root.exists():
            result.errors.append(IngestError(str(root), "no such file or folder"))
            continue
        candidates = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in candidates:
            if any(part.startswith(".") for part in path.relative_to(root).parts if root.is_dir()):
                continue
            if path.name == SIDECAR_NAME:
                try:
                    sidecars[path.parent.resolve()] = load_sidecar(path)
                except SidecarError as exc:
                    result.errors.append(IngestError(str(path), str(exc)))
            elif path.suffix.lower() in READERS:
                files.append(path)
            else:
                result.skipped.append(str(path))
    return files, sidecars


def _doc_id(path: Path, sha256: str) -> str:
    stem = re.sub(r"[^\w-]+", "_", path.stem, flags=re.UNICODE).strip("_") or "doc"
    return f"{stem}-{sha256[:8]}"


def read_document(path: Path, tags: dict) -> Document:
    text, title, decoded = read_text_file(path)
    tags = dict(tags)
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Document(
        id=_doc_id(path, sha256),
        source=str(path),
        format=READERS[path.suffix.lower()],
        title=str(tags.pop("title", None) or title or path.stem),
        author=tags.pop("author", None),
        lang=str(tags.pop("lang", None) or detect_language(text)),
        text=text,
        turns=None,
        meta=tags,
        encoding=Encoding(detected=decoded.encoding, repaired=decoded.repaired),
        sha256=sha256,
    )


def ingest_paths(paths: list[str | Path], tags: dict | None = None) -> IngestResult:
    """Read every supported file under `paths`; sidecar tags first, then `tags` (CLI) on top."""
    result = IngestResult()
    files, sidecars = _discover([Path(p) for p in paths], result)
    seen: dict[str, str] = {}
    for path in files:
        try:
            doc = read_document(path, {**tags_for(path, sidecars), **(tags or {})})
        except (UnreadableText, OSError) as exc:
            result.errors.append(IngestError(str(path), str(exc)))
            continue
        if doc.sha256 in seen:
            result.errors.append(IngestError(str(path), f"exact duplicate of {seen[doc.sha256]}, skipped"))
            continue
        seen[doc.sha256] = doc.source
        result.documents.append(doc)
    return result


def write_documents(result: IngestResult, out: str | Path) -> Path:
    """Write DOCS.errors.jsonl beside `out` (always, so a rerun never shows stale errors) and, when
    anything was read, DOCS.jsonl itself; an ingest that read nothing leaves an earlier DOCS.jsonl alone."""
    out = Path(out)
    errors_path = out.with_name(out.name.removesuffix(".jsonl") + ".errors.jsonl")
    write_jsonl(errors_path, ({"path": e.path, "problem": e.problem} for e in result.errors))
    if result.documents:
        write_jsonl(out, result.documents)
    return errors_path
