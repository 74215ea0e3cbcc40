"""Scenes for the builder in bounded memory: the light fields every scene needs for ordering
(document, position, language, loop steps, tags) stay in memory; texts too while they fit in
TEXT_CACHE_BYTES, else they are read back from SCENES.jsonl by byte offset, as is a scene's full
record when a lens has to render it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from ltm.formats import Scene


TEXT_CACHE_BYTES = 256 * 2**20


class SceneFileError(ValueError):
    pass


@dataclass(frozen=True)
class SceneInfo:
    doc_id: str
    index: int
    lang: str
    loop: tuple[str, ...]
    meta: dict
    turn_index: int | None = None  # a scene of a dialogue: the turn it holds
    turn_role: str | None = None

    @property
    def scene_id(self) -> str:
        return f"{self.doc_id}#{self.index:04d}"


class SceneTable:
    def __init__(self, infos: list[SceneInfo], path: Path | None = None, offsets: list[int] | None = None,
                 scenes: list[Scene] | None = None, texts: list[str] | None = None):
        self.infos = infos
        self._path, self._offsets, self._scenes, self._texts = path, offsets, scenes, texts
        self.scene = lru_cache(maxsize=4096)(self._read)

    def __len__(self) -> int:
        return len(self.infos)

    @staticmethod
    def from_scenes(scenes: list[Scene]) -> "SceneTable":
        return SceneTable([_info(s) for s in scenes], scenes=scenes, texts=[s.text for s in scenes])

    @staticmethod
    def from_jsonl(path: Path) -> "SceneTable":
        """One pass over the file: the light fields and each line's offset; bad lines are refused
        with their line number, before any work."""
        infos, offsets, texts, cached = [], [], [], 0
        with open(path, "rb") as handle:
            offset = 0
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        scene = Scene.model_validate_json(line)
                    except ValidationError as exc:
                        first = exc.errors()[0]
                        raise SceneFileError(f"{path}:{number}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
                    infos.append(_info(scene))
                    offsets.append(offset)
                    if texts is not None:
                        texts.append(scene.text)
                        cached += len(line)
                        texts = texts if cached <= TEXT_CACHE_BYTES else None
                offset += len(line)
        return SceneTable(infos, path=path, offsets=offsets, texts=texts)

    def _read(self, i: int) -> Scene:
        if self._scenes is not None:
            return self._scenes[i]
        with open(self._path, "rb") as handle:
            handle.seek(self._offsets[i])
            return Scene.model_validate_json(handle.readline())

    def texts(self, indices: list[int]) -> Iterator[str]:
        """Scene texts in the order given, reading the file sequentially where it can."""
        if self._texts is not None:
            for i in indices:
                yield self._texts[i]
            return
        with open(self._path, "rb") as handle:
            for i in indices:
                handle.seek(self._offsets[i])
                yield json.loads(handle.readline())["text"]


def _info(scene: Scene) -> SceneInfo:
    turn = scene.turn
    return SceneInfo(scene.doc_id, scene.index, scene.lang, tuple(scene.loop), dict(scene.meta),
                     turn.index if turn else None, turn.role if turn else None)
