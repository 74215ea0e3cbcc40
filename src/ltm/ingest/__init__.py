"""Ingest: files and folders of texts -> documents (DOCS.jsonl)."""

from ltm.ingest.pipeline import IngestError, IngestResult, ingest_paths, write_documents

__all__ = ["IngestError", "IngestResult", "ingest_paths", "write_documents"]
