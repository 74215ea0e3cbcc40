"""Scene memory: the server remembers scenes (chat exchanges, /v1/scenes answers, texts clients add)
per namespace and finds the most related earlier ones for a new prompt.

A namespace is a folder under the memory folder: `records.jsonl` (MemoryRecord lines, oldest
first) and `index.faiss` (a FAISS IndexIDMap2 over IndexFlatIP: cosine on L2-normalised vectors,
keyed by record id). Vectors come from a stateless embedder, hashed word stems plus hashed
character n-grams, so the index stays valid across restarts without refitting anything.

Both files are rewritten atomically on every change, records first. The records are the truth and
the index is derived from them: a namespace whose index disagrees with its records (a crash between
the two writes, a missing file) has its index rebuilt when it is loaded.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from ltm.formats import MemoryRecord
from ltm.io import atomic_write, iter_jsonl, write_jsonl
from ltm.scenes.link import normalise, stems

# Letters, digits, _ and -: a namespace is a folder name, so no dots, slashes or traversal.
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
RECORDS = "records.jsonl"
INDEX = "index.faiss"
HASHED_FEATURES = 1024  # per analyzer; two analyzers make the vector's 2,048 dimensions
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
            space.records[ident] = record
            space.index.add_with_ids(embed([text]), np.array([ident], dtype=np.int64))
            self._save(namespace, space)
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
        records: dict[int, MemoryRecord] = {}
        if (folder / RECORDS).exists():
            for number, data, problem in iter_jsonl(folder / RECORDS):
                if problem:
                    raise ValueError(f"{folder / RECORDS}:{number}: {problem}")
                record = MemoryRecord.model_validate(data)
                records[record.id] = record
        index = _read_index(folder / INDEX, records)
        if index is not None:
            return _Namespace(records, index)
        import faiss

        space = _Namespace(records, faiss.IndexIDMap2(faiss.IndexFlatIP(2 * HASHED_FEATURES)))
        if records:  # the index was lost or is stale: derive it again from the records
            space.index.add_with_ids(embed([r.text for r in records.values()]), np.array(list(records), dtype=np.int64))
            self._save(folder.name, space)
        return space

    def _save(self, namespace: str, space: _Namespace) -> None:
        import faiss

        folder = self.folder / namespace
        try:
            write_jsonl(folder / RECORDS, space.records.values())
            with atomic_write(folder / INDEX, "wb") as handle:
                handle.write(faiss.serialize_index(space.index).tobytes())
        except BaseException:
            self._loaded.pop(namespace, None)  # what is on disk is the truth: read it again next time
            raise


def _read_index(path: Path, records: dict[int, MemoryRecord]):
    """The saved index, or None when it is missing, unreadable or does not hold exactly these records."""
    import faiss

    if not path.exists():
        return None
    try:
        index = faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
    except RuntimeError:  # not a FAISS index (edited by hand, or another tool's file)
        return None
    if index.d != 2 * HASHED_FEATURES or sorted(faiss.vector_to_array(index.id_map).tolist()) != sorted(records):
        return None
    return index
