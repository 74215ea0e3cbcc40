"""Documents -> scenes: segment, annotate (heuristic or LLM), link, in that order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import ValidationError

from ltm.config import ScenesConfig
from ltm.formats import Document, Scene, SceneTurn, Span
from ltm.io import iter_jsonl
from ltm.scenes.annotate import annotate
from ltm.scenes.lexicon import builtin_lexicon
from ltm.scenes.link import link
from ltm.scenes.segment import segment


def load_documents(path: str | Path, errors: list[str]) -> Iterator[Document]:
    """Yield valid documents; each bad line appends one message naming the file, line and field."""
    for number, record, problem in iter_jsonl(path):
        if problem is None:
            try:
                yield Document.model_validate(record)
                continue
            except ValidationError as exc:
                first = exc.errors()[0]
                problem = f"{'.'.join(map(str, first['loc'])) or 'record'}: {first['msg']}"
        errors.append(f"{path}:{number}: {problem}")


def scenes_of(doc: Document, config: ScenesConfig) -> list[Scene]:
    tags = {k: v for k, v in doc.meta.items() if isinstance(v, (str, int, float, bool))}
    if doc.author:
        tags.setdefault("author", doc.author)
    lexicon = builtin_lexicon(doc.lang)
    dialogue = doc.turn_spans() is not None  # then segment() returns the turns, one scene each
    scenes = []
    for index, (start, end) in enumerate(segment(doc, config.min_tokens, config.max_tokens)):
        text = doc.text[start:end]
        # The heuristic annotation is always made: the LLM annotator starts from it and falls back to it.
        fields = annotate(text, lexicon)
        turn = SceneTurn(index=index, role=doc.turns[index].role) if dialogue else None
        scenes.append(
            Scene(scene_id=f"{doc.id}#{index:04d}", doc_id=doc.id, index=index, span=Span(start=start, end=end),
                  text=text, lang=doc.lang, meta=tags, turn=turn, **fields)
        )
    return scenes


def make_scenes(
    documents: list[Document], config: ScenesConfig, errors: list[str], seed: int = 0,
    on_document: Callable[[Document], None] | None = None,
    on_llm_progress: Callable[[int, int], None] | None = None,
    on_link_progress: Callable[[int, int], None] | None = None,
) -> list[Scene]:
    out: list[Scene] = []
    for doc in documents:
        found = scenes_of(doc, config)
        if not found:
            errors.append(f"document {doc.id} ({doc.source}): no text to cut into scenes")
        out.extend(found)
        if on_document:
            on_document(doc)
    if config.annotator == "llm":
        from ltm.scenes.llm_annotate import annotate_with_llm

        out = annotate_with_llm(out, config.llm, on_llm_progress)
    return link(out, config.link_k, config.link_min_score, config.embedder, seed, config.link_cross_min_score, on_link_progress,
                exact_up_to=config.link_exact_up_to)
