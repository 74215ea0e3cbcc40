"""ltm's data stages as datatrove pipeline steps (extra `scale`), for corpora past one machine.

Each step is one of ltm's own functions over datatrove's `Document` (text, id, metadata): the
metadata holds every other field of an `ltm.document` or `ltm.scene` record, so a row converts to
the record and back without loss, and the writers write plain ltm JSONL, one shard per task. The
same steps run under datatrove's local, Slurm and Ray executors (ltm.scale.recipes).

- LtmFileReader: every format `ltm ingest` reads (its readers decode, repair mojibake and strip
  Project Gutenberg's boilerplate, as on one machine); a bad file is a logged warning and a count.
- MojibakeRepair, GutenbergStrip: the same repairs for documents from other readers (a JSONL dump).
- NearDuplicateFilter: ltm's numpy MinHash within one task, for a corpus one task can hold;
  past that, datatrove's MinHash stages (recipes.stages) with LtmMinhashSignature first.
- SceneCutter: documents -> scenes (segment, annotate, link within the document).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from datatrove.data import Document as Row
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.logging import logger
from datatrove.utils.word_tokenizers import WordTokenizer

from ltm.config import ScenesConfig
from ltm.formats import Document, Scene
from ltm.ingest.dedup import DuplicateFinder, shingle_hashes
from ltm.ingest.gutenberg import is_gutenberg, strip_gutenberg
from ltm.ingest.mojibake import repair
from ltm.ingest.pipeline import MAX_FILE_BYTES, finish
from ltm.ingest.raw import ReaderError
from ltm.ingest.readers import SNIFF_BYTES, reader_for
from ltm.scenes.link import link
from ltm.scenes.pipeline import scenes_of

RECORDS = {"document": Document, "scene": Scene}


def to_row(record: Document | Scene) -> Row:
    fields = record.model_dump(mode="json", by_alias=True)
    key = "id" if isinstance(record, Document) else "scene_id"
    return Row(text=fields.pop("text"), id=fields.pop(key), metadata=fields)


def from_row(row: Row, kind: str = "document") -> Document | Scene:
    """The ltm record a row holds; a row read back from JSONL by datatrove's reader may carry its
    own bookkeeping (file_path) in the metadata, which no record has."""
    cls = RECORDS[kind]
    key = "id" if kind == "document" else "scene_id"
    fields = {k: v for k, v in row.metadata.items() if k in cls.model_fields or k == "schema"}
    return cls.model_validate({**fields, "text": row.text, key: row.id})


class WhitespaceWords(WordTokenizer):
    """Words split at whitespace: any language, no NLTK data to fetch."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for sentence in self.sent_tokenize(text):
            start = text.index(sentence, start)
            spans.append((start, start + len(sentence)))
            start += len(sentence)
        return spans


class LtmMinhashSignature(MinhashDedupSignature):
    """datatrove's first MinHash stage over ltm's shingles: lowercased whitespace word 5-grams,
    hashed with CRC32 and combined in numpy, long documents sampled to an eighth (ltm.ingest.dedup),
    so both paths see the same near duplicates; ten times faster per core than datatrove's own
    shingling, which hashes every n-gram in Python (bench/scale_pipeline.py --compare-dedup-mb)."""

    def __init__(self, output_folder, config: MinhashConfig):
        super().__init__(output_folder, config, language=WhitespaceWords())  # a word tokenizer it never uses: no NLTK data

    def get_shingles(self, text: str) -> np.ndarray:
        return shingle_hashes(text).reshape(-1, 1)


class LtmFileReader(BaseDiskReader):
    """Files in every format `ltm ingest` reads, the task's share of the folder's files; `tags`
    go on every document (sidecar metadata.yaml files are not read here)."""

    name = "ltm files"

    def __init__(self, data_folder, glob_pattern: str | None = None, tags: dict | None = None, **kwargs):
        super().__init__(data_folder, glob_pattern=glob_pattern, recursive=True, **kwargs)
        self.tags = tags or {}

    def read_file(self, filepath: str) -> Iterator[Row]:
        with self.data_folder.open(filepath, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        source = self.data_folder.resolve_paths(filepath)
        read = reader_for(filepath, data[:SNIFF_BYTES])
        if read is None:
            self.stat_update("skipped_files")
            return
        try:
            if not data.strip():
                raise ReaderError("empty file")
            if len(data) > MAX_FILE_BYTES:
                raise ReaderError(f"larger than {MAX_FILE_BYTES // 2**20} MB")
            raws = read(data, source)
        except ReaderError as exc:
            logger.warning(f"{source}: {exc}")
            self.stat_update("bad_files")
            return
        for raw in raws:
            if raw.text.strip():
                yield to_row(finish(raw, source, self.tags))


def _changed(row: Row, text: str, note: str) -> None:
    """Give a document its repaired text: a new hash, the repair noted, and offsets into the old
    text (sections, breaks) dropped, since they no longer hold."""
    row.text = text
    meta = row.metadata
    meta["sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    meta["encoding"] = {**meta.get("encoding", {}), "repaired": [*meta.get("encoding", {}).get("repaired", []), note]}
    meta["sections"], meta["breaks"] = [], []


class MojibakeRepair(PipelineStep):
    """Undo mojibake (UTF-8 decoded as a single-byte code page) line by line, as ltm's readers do."""

    type, name = "ltm", "mojibake repair"

    def run(self, data, rank: int = 0, world_size: int = 1):
        for row in data:
            text, repairs = repair(row.text)
            if repairs:
                _changed(row, text, "; ".join(repairs))
                self.stat_update("repaired")
            yield row


class GutenbergStrip(PipelineStep):
    """Strip Project Gutenberg's header and licence; its title and author fill what is missing."""

    type, name = "ltm", "gutenberg strip"

    def run(self, data, rank: int = 0, world_size: int = 1):
        for row in data:
            if is_gutenberg(row.text):
                text, fields = strip_gutenberg(row.text)
                _changed(row, text, "gutenberg:boilerplate removed")
                for key in ("title", "author"):
                    if fields.get(key) and not row.metadata.get(key):
                        row.metadata[key] = fields[key]
                self.stat_update("stripped")
            yield row


class NearDuplicateFilter(PipelineStep):
    """ltm's MinHash near-duplicate search over the task's documents (the first one seen is kept):
    signatures stay in memory (512 bytes a document), so this is for a corpus a task can hold."""

    type, name = "ltm", "near duplicates"

    def __init__(self, threshold: float = 0.85):
        super().__init__()
        self.threshold = threshold

    def run(self, data, rank: int = 0, world_size: int = 1):
        finder = DuplicateFinder(self.threshold)
        for row in data:
            found = finder.check(row.metadata.get("source", row.id), row.metadata["sha256"], row.text)
            if found:
                self.stat_update("duplicates")
                continue
            yield row


class SceneCutter(PipelineStep):
    """Each document's scenes, annotated heuristically and linked to earlier scenes of the same
    document (cross-document links need every scene at once: `ltm scenes` on one machine)."""

    type, name = "ltm", "scene cutter"

    def __init__(self, config: ScenesConfig | None = None, seed: int = 0):
        super().__init__()
        self.config, self.seed = config or ScenesConfig(), seed
        if self.config.annotator != "heuristic":
            raise ValueError("SceneCutter annotates heuristically; run the LLM annotator on its output (`ltm scenes`)")

    def run(self, data, rank: int = 0, world_size: int = 1):
        c = self.config
        for row in data:
            scenes = scenes_of(from_row(row), c)
            if not scenes:
                self.stat_update("empty_documents")
            for scene in link(scenes, c.link_k, c.link_min_score, c.embedder, self.seed, exact_up_to=c.link_exact_up_to):
                self.stat_update("scenes")
                yield to_row(scene)


class LtmWriter(JsonlWriter):
    """Rows as ltm records (`kind` document or scene, validated), one plain JSONL shard per task."""

    name = "ltm jsonl"

    def __init__(self, output_folder, kind: str = "document", output_filename: str = "${rank}.jsonl", **kwargs):
        self.kind = kind
        super().__init__(output_folder, output_filename=output_filename, compression=None, adapter=_record_adapter, **kwargs)


def _record_adapter(writer: LtmWriter, row: Row) -> dict:
    return from_row(row, writer.kind).model_dump(mode="json", by_alias=True)


def shard_paths(folder: str | Path) -> list[Path]:
    """The JSONL shards a writer left in `folder`, in task order."""
    return sorted(Path(folder).glob("*.jsonl"))
