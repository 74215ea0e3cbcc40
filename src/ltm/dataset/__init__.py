"""The dataset: scenes -> tokenizer, token shards and a manifest (DATASET_DIR; `build.py`), and
reading it back (`reader.py`)."""

from ltm.dataset.build import BuildError, build_dataset
from ltm.dataset.reader import DatasetError, load_manifest, load_split
from ltm.dataset.scenes_table import SceneFileError, SceneTable

__all__ = ["BuildError", "DatasetError", "SceneFileError", "SceneTable", "build_dataset", "load_manifest", "load_split"]
