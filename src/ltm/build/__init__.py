"""Build: scenes -> tokenizer, token shards and a manifest (DATASET_DIR)."""

from ltm.build.dataset import BuildError, build_dataset, load_manifest, load_split
from ltm.build.scenes_table import SceneFileError, SceneTable

__all__ = ["BuildError", "SceneFileError", "SceneTable", "build_dataset", "load_manifest", "load_split"]
