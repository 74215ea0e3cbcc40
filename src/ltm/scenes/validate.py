"""`ltm scenes validate`: check a SCENES.jsonl line by line against the scene format, and, given
the documents, that every span indexes its document's text exactly."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ltm.formats import Scene
from ltm.markup import TURN_LABELS
from ltm.io import iter_jsonl
from ltm.scenes.pipeline import load_documents


def validate_scenes(path: Path, docs_path: Path | None = None) -> list[str]:
    """Return one message per violation, each naming the file, line and field."""
    problems: list[str] = []
    # Bad DOCS lines are the ingest file's problem, not the scenes'; scenes pointing at them are caught below.
    texts = {d.id: d.text for d in load_documents(docs_path, [])} if docs_path else None
    seen: set[str] = set()
    for number, record, problem in iter_jsonl(path):
        where = f"{path}:{number}"
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        try:
            scene = Scene.model_validate(record)
        except ValidationError as exc:
            problems.extend(f"{where}: {'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors())
            continue
        if scene.scene_id in seen:
            problems.append(f"{where}: scene_id: {scene.scene_id} appears twice")
        seen.add(scene.scene_id)
        if scene.span.end < scene.span.start:
            problems.append(f"{where}: span: end {scene.span.end} is before start {scene.span.start}")
        if scene.turn is not None and not scene.text.startswith(label := f"{TURN_LABELS[scene.turn.role]}: "):
            problems.append(f"{where}: turn: a {scene.turn.role} turn's text starts with {label!r}")
        for ref in scene.references:
            if ref.scene_id not in seen:
                problems.append(f"{where}: references: {ref.scene_id} is not an earlier scene")
        if texts is not None:
            if scene.doc_id not in texts:
                problems.append(f"{where}: doc_id: {scene.doc_id} is not in {docs_path}")
            elif texts[scene.doc_id][scene.span.start : scene.span.end] != scene.text:
                problems.append(f"{where}: span: text[{scene.span.start}:{scene.span.end}] of {scene.doc_id} differs from the scene text")
    return problems
