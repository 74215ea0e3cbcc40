"""Read documents, segment and annotate each, and return scenes in document order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from ltm.formats import Document, Scene, Span
from ltm.io import iter_jsonl
from ltm.scenes import annotate
from ltm.scenes.segment import segment


def load_documents(path: str | Path, errors: list[str]) -> Iterator[Document]:
    """Yield valid documents; each bad line appends one message naming the file and line."""
    for number, record, problem in iter_jsonl(path):
        if problem is None:
            try:
                yield Document.model_validate(record)
                continue
            except ValidationError as exc:
                first = exc.errors()[0]
                problem = f"{'.'.join(map(str, first['loc'])) or 'record'}: {first['msg']}"
        errors.append(f"{path}:{number}: {problem}")


def scenes_of(doc: Document, min_chars: int, max_chars: int) -> list[Scene]:
    scenes = []
    tags = {k: v for k, v in doc.meta.items() if isinstance(v, (str, int, float))}
    if doc.author:
        tags.setdefault("author", doc.author)
    for index, (start, end) in enumerate(segment(doc.text, min_chars, max_chars)):
        text = doc.text[start:end]
        scenes.append(
            Scene(
                scene_id=f"{doc.id}#{index:04d}",
                doc_id=doc.id,
                index=index,
                span=Span(start=start, end=end),
                text=text,
                lang=doc.lang,
                roles=annotate.speakers(text),
                questions=annotate.questions(text),
                annotator=annotate.ANNOTATOR,
                meta=tags,
            )
        )
    return scenes


def make_scenes(documents: list[Document], min_chars: int, max_chars: int, errors: list[str]) -> list[Scene]:
    out: list[Scene] = []
    for doc in documents:
        found = scenes_of(doc, min_chars, max_chars)
        if not found:
            errors.append(f"document {doc.id} ({doc.source}): no text to cut into scenes")
        out.extend(found)
    return out
