"""Scenes for the builder in bounded memory: the light fields every scene needs for ordering
(document, position, language, loop steps, tags) stay in memory; texts too while they fit in
TEXT_CACHE_BYTES, else they are read back by byte offset, as is a scene's full record when a lens
has to render it. The scenes come from one SCENES.jsonl, or from shards (`ltm pipeline` writes one
per task): a folder of *.jsonl or a glob, read in the order of their sorted names."""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
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


def scene_files(spec: str | Path) -> list[Path]:
    """The files a --scenes argument names: a file, a folder of *.jsonl shards, or a glob pattern."""
    path = Path(spec)
    if path.is_file():
        return [path]
    found = sorted(path.glob("*.jsonl")) if path.is_dir() else sorted(Path(p) for p in glob.glob(str(spec), recursive=True))
    if not found:
        raise FileNotFoundError(f"{spec}: no scene file, folder of *.jsonl shards or files matching the pattern")
    return found


class SceneTable:
    def __init__(self, infos: list[SceneInfo], paths: list[Path] | None = None, files: np.ndarray | None = None,
                 offsets: np.ndarray | None = None, scenes: list[Scene] | None = None, texts: list[str] | None = None):
        self.infos = infos
        # Where scene i's line is: paths[files[i]] at byte offsets[i] (arrays: 12 bytes a scene).
        self._paths, self._files, self._offsets, self._scenes, self._texts = paths, files, offsets, scenes, texts
        self.scene = lru_cache(maxsize=4096)(self._read)

    def __len__(self) -> int:
        return len(self.infos)

    @staticmethod
    def from_scenes(scenes: list[Scene]) -> "SceneTable":
        return SceneTable([_info(s) for s in scenes], scenes=scenes, texts=[s.text for s in scenes])

    @staticmethod
    def from_jsonl(spec: str | Path) -> "SceneTable":
        """One pass over the file(s) `spec` names (scene_files): the light fields and each line's
        place; bad lines are refused with their file and line number, before any work."""
        paths = scene_files(spec)
        infos, files, offsets, texts, cached = [], [], [], [], 0
        for file_number, path in enumerate(paths):
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
                        files.append(file_number)
                        offsets.append(offset)
                        if texts is not None:
                            texts.append(scene.text)
                            cached += len(line)
                            texts = texts if cached <= TEXT_CACHE_BYTES else None
                    offset += len(line)
        return SceneTable(infos, paths, np.asarray(files, dtype=np.int32), np.asarray(offsets, dtype=np.int64), texts=texts)

    def _line(self, handles: dict, i: int) -> bytes:
        file = int(self._files[i])
        if file not in handles:
            handles[file] = open(self._paths[file], "rb")
        handles[file].seek(int(self._offsets[i]))
        return handles[file].readline()

    def _read(self, i: int) -> Scene:
        if self._scenes is not None:
            return self._scenes[i]
        handles: dict = {}
        try:
            return Scene.model_validate_json(self._line(handles, i))
        finally:
            for handle in handles.values():
                handle.close()

    def texts(self, indices: list[int]) -> Iterator[str]:
        """Scene texts in the order given, reading the files sequentially where it can."""
        if self._texts is not None:
            for i in indices:
                yield self._texts[i]
            return
        handles: dict = {}
        try:
            for i in indices:
                yield json.loads(self._line(handles, i))["text"]
        finally:
            for handle in handles.values():
                handle.close()


def _info(scene: Scene) -> SceneInfo:
    turn = scene.turn
    return SceneInfo(scene.doc_id, scene.index, scene.lang, tuple(scene.loop), dict(scene.meta),
                     turn.index if turn else None, turn.role if turn else None)
