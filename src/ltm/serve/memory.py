"""Scene memory: the server remembers scenes (chat exchanges, /v1/scenes answers, texts clients add)
per namespace and finds the most related earlier ones for a new prompt.

A namespace is a folder under the memory folder: `records.jsonl` (MemoryRecord lines, oldest
first) and `vectors.bin` (one fixed-size row per record, in the same order: its id as a little-endian
int64, then its unit vector as VECTOR_DIM little-endian float32). Vectors come from a stateless
embedder, hashed word stems plus hashed character n-grams, so they stay valid across restarts
without refitting anything; the search index (FAISS IndexIDMap2 over IndexFlatIP: cosine on
L2-normalised vectors, keyed by record id) is built from them in memory when a namespace is loaded.

An add appends one line to the records and one row to the vectors, records first, each flushed to
disk: the cost of an add does not grow with the namespace. A delete rewrites both files atomically.
The records are the truth and the vectors are derived from them: a write cut short (a torn last
line or row, a crash between the two appends, a missing file) is mended when the namespace is loaded.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from ltm.formats import MemoryRecord
from ltm.io import atomic_write, write_jsonl
from ltm.scenes.link import normalise, stems

# Letters, digits, _ and -: a namespace is a folder name, so no dots, slashes or traversal.
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
RECORDS = "records.jsonl"
VECTORS = "vectors.bin"
LEGACY_INDEX = "index.faiss"  # the serialized FAISS index that earlier versions rewrote on every add
HASHED_FEATURES = 1024  # per analyzer; two analyzers make the vector's 2,048 dimensions
VECTOR_DIM = 2 * HASHED_FEATURES
ROW = np.dtype([("id", "<i8"), ("vector", "<f4", (VECTOR_DIM,))])  # one row of vectors.bin
SNIPPET_CHARS = 300  # how much of a remembered scene goes into a prompt
ID_BITS = 53  # ids are random below 2**53: a deleted id is not handed out again, and JavaScript clients keep ids exact


class Hit(BaseModel):
    id: int
    score: float
    text: str
    meta: dict
    created: float


def check_namespace(namespace: str) -> str:
    if not re.fullmatch(NAMESPACE_PATTERN, namespace):
        raise ValueError(f"namespace {namespace!r}: use 1-64 letters, digits, _ or -, starting with a letter or digit")
    return namespace


def embed(texts: list[str]) -> np.ndarray:
    """Unit vectors, the same for the same text in any process: hashing needs no fitted vocabulary.
    Word stems match Russian inflections (as in scene linking); character n-grams catch typos and
    compounds. Each half is normalised first so that neither outweighs the other."""
    from sklearn.feature_extraction.text import HashingVectorizer

    words = HashingVectorizer(analyzer=stems, n_features=HASHED_FEATURES, norm="l2")
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 4), n_features=HASHED_FEATURES, norm="l2", lowercase=True)
    parts = [v.transform(texts).toarray() for v in (words, chars)]
    return normalise(np.hstack(parts).astype(np.float32))


def snippets(hits: list[Hit]) -> str:
    """Remembered scenes as prompt lines, one "- text" each, whitespace folded and cut short."""
    return "\n".join(f"- {' '.join(hit.text.split())[:SNIPPET_CHARS]}" for hit in hits)


@dataclass
class _Namespace:
    records: dict[int, MemoryRecord]  # in insertion order, oldest first
    index: object  # faiss.IndexIDMap2


class MemoryStore:
    """Every namespace under `folder`; safe to share between request threads."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._loaded: dict[str, _Namespace] = {}
        self._lock = threading.Lock()

    def add(self, namespace: str, text: str, meta: dict | None = None) -> MemoryRecord:
        with self._lock:
            space = self._space(namespace)
            ident = secrets.randbits(ID_BITS)
            while ident in space.records:
                ident = secrets.randbits(ID_BITS)
            record = MemoryRecord(id=ident, text=text, meta=meta or {}, created=time.time())
            vector = embed([text])
            folder = self.folder / namespace
            try:
                _append(folder / RECORDS, (record.model_dump_json(by_alias=True) + "\n").encode("utf-8"))
                _append(folder / VECTORS, _rows([ident], vector).tobytes())
            except BaseException:
                self._loaded.pop(namespace, None)  # what is on disk is the truth: read it again next time
                raise
            space.records[ident] = record
            space.index.add_with_ids(vector, np.array([ident], dtype=np.int64))
            return record

    def list(self, namespace: str, limit: int = 50) -> list[MemoryRecord]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._space(namespace).records.values()))[:limit]

    def search(self, namespace: str, query: str, k: int = 5) -> list[Hit]:
        """The k records most like `query`, best first; none when the namespace is empty or new."""
        with self._lock:
            space = self._space(namespace)
            if k <= 0 or not space.records:
                return []
            scores, ids = space.index.search(embed([query]), min(k, len(space.records)))
            return [
                Hit(id=int(i), score=round(float(s), 4), **space.records[int(i)].model_dump(include={"text", "meta", "created"}))
                for s, i in zip(scores[0], ids[0])
                if i >= 0
            ]

    def delete(self, namespace: str, ident: int) -> bool:
        with self._lock:
            space = self._space(namespace)
            if space.records.pop(ident, None) is None:
                return False
            space.index.remove_ids(np.array([ident], dtype=np.int64))
            self._save(namespace, space)
            return True

    def _space(self, namespace: str) -> _Namespace:
        if namespace not in self._loaded:
            self._loaded[check_namespace(namespace)] = self._load(self.folder / namespace)
        return self._loaded[namespace]

    def _load(self, folder: Path) -> _Namespace:
        import faiss

        records, torn = _read_records(folder / RECORDS)
        ids = np.array(list(records), dtype=np.int64)
        rows = _read_rows(folder / VECTORS)
        space = _Namespace(records, faiss.IndexIDMap2(faiss.IndexFlatIP(VECTOR_DIM)))
        if torn or not np.array_equal(rows["id"], ids):  # a write was cut short: derive the vectors again
            if torn:
                write_jsonl(folder / RECORDS, records.values())
            rows = _rows(ids, embed([r.text for r in records.values()]) if records else np.zeros((0, VECTOR_DIM), np.float32))
            with atomic_write(folder / VECTORS, "wb") as handle:
                handle.write(rows.tobytes())
        (folder / LEGACY_INDEX).unlink(missing_ok=True)
        if len(rows):
            space.index.add_with_ids(np.ascontiguousarray(rows["vector"]), ids)
        return space

    def _save(self, namespace: str, space: _Namespace) -> None:
        """Both files whole, atomically, records first (after a delete)."""
        folder = self.folder / namespace
        try:
            write_jsonl(folder / RECORDS, space.records.values())
            ids = np.array(list(space.records), dtype=np.int64)
            vectors = np.stack([space.index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, VECTOR_DIM), np.float32)
            with atomic_write(folder / VECTORS, "wb") as handle:
                handle.write(_rows(ids, vectors).tobytes())
        except BaseException:
            self._loaded.pop(namespace, None)  # what is on disk is the truth: read it again next time
            raise


def _rows(ids, vectors: np.ndarray) -> np.ndarray:
    rows = np.zeros(len(ids), dtype=ROW)
    rows["id"], rows["vector"] = ids, vectors
    return rows


def _append(path: Path, data: bytes) -> None:
    """Add `data` at the end of `path` and flush it to disk; the bytes already there are not touched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _read_records(path: Path) -> tuple[dict[int, MemoryRecord], bool]:
    """The records, and whether the last line was torn (an append cut short: no newline, not JSON),
    in which case it is left out. A bad line anywhere else is an error naming the file and line."""
    records: dict[int, MemoryRecord] = {}
    if not path.exists():
        return records, False
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # what follows the last newline: empty unless an append was cut short
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                record = MemoryRecord.model_validate_json(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
            records[record.id] = record
    if tail.strip():
        try:
            record = MemoryRecord.model_validate_json(tail)
        except ValueError:
            return records, True
        records[record.id] = record
        return records, True  # whole, but without its newline: rewritten so that the next append starts a line
    return records, False


def _read_rows(path: Path) -> np.ndarray:
    """The vector rows; a torn last row (an append cut short) is left out."""
    if not path.exists():
        return np.zeros(0, dtype=ROW)
    data = path.read_bytes()
    return np.frombuffer(data[: len(data) - len(data) % ROW.itemsize], dtype=ROW)
