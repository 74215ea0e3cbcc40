"""Build: scenes -> tokenizer, token shards and a manifest (DATASET_DIR)."""

from ltm.build.dataset import BuildError, build_dataset, load_manifest

__all__ = ["BuildError", "build_dataset", "load_manifest"]
