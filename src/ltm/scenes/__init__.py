"""Scenes: documents -> annotated scenes (SCENES.jsonl)."""

from ltm.scenes.pipeline import load_documents, make_scenes

__all__ = ["load_documents", "make_scenes"]
