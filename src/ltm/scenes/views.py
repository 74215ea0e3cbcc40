"""Reading views: one YAML file per document with its scenes, for people rather than programs."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import yaml

from ltm.formats import Scene
from ltm.io import atomic_write


class _Literal(str):
    pass


def _literal(dumper: yaml.Dumper, value: _Literal):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


yaml.add_representer(_Literal, _literal, Dumper=yaml.SafeDumper)


def _view(scene: Scene) -> dict:
    data = scene.model_dump(mode="json", by_alias=True, exclude={"schema_", "doc_id", "lang", "meta"})
    data["text"] = _Literal(scene.text.rstrip() + "\n")
    return {key: value for key, value in data.items() if value not in ([], {}, None)}


def write_views(scenes: list[Scene], folder: Path) -> int:
    """Write FOLDER/<doc_id>.yaml for each document; return how many files were written."""
    by_doc: dict[str, list[Scene]] = defaultdict(list)
    for scene in scenes:
        by_doc[scene.doc_id].append(scene)
    for doc_id, doc_scenes in by_doc.items():
        name = re.sub(r"[^\w.-]+", "_", doc_id) + ".yaml"
        body = {"doc_id": doc_id, "lang": doc_scenes[0].lang, "meta": doc_scenes[0].meta, "scenes": [_view(s) for s in doc_scenes]}
        with atomic_write(folder / name) as handle:
            yaml.safe_dump(body, handle, allow_unicode=True, sort_keys=False, width=100)
    return len(by_doc)
