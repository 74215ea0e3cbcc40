"""Shared data stages: the runs of an experiment whose data stages have the same inputs prepare them
once, in a cache folder, and each run folder gets hard links to them (so it still holds every file).

Each stage's output is named by a hash of what it depends on, from the validated config (so YAML
spelling and defaults do not matter):

- ingest: the ingest section, and the size and modification time of every input file;
- scenes: the ingest key, the scenes section, and the data seed when scenes are linked;
- tokenizer: the scenes key, the data seed and the build settings the tokenizer depends on
  (ltm.dataset.build.TOKENIZER_SETTINGS): one tokenizer per distinct training text;
- build: the scenes key, the build section (except `workers`, which changes no byte) and the data seed.

`ltm run --shared DIR` prepares a stage under DIR/<stage>-<key>/ unless it is there; several runs at
once wait for each other on a lock file per stage, so each stage is made once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ltm.config import RunConfig

# Build settings that change how fast a build runs, never what it writes.
_BUILD_SPEED_ONLY = ("workers",)


def _hash(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _inputs(paths: list[str]) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every file under the ingest paths: an edited corpus is a new key."""
    files = []
    for root in map(Path, paths):
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if path.is_file():
                stat = path.stat()
                files.append((str(path), stat.st_size, stat.st_mtime_ns))
    return files


def data_keys(config: RunConfig) -> dict[str, str]:
    """The cache key of each data stage (ingest, scenes, tokenizer, build) of a config whose paths are absolute."""
    from ltm.dataset.build import TOKENIZER_SETTINGS

    c = config.model_dump(mode="json")
    ingest = _hash({"ingest": c["ingest"], "facts": c["facts"], "files": _inputs(config.ingest.paths)})
    scenes = _hash({"ingest": ingest, "scenes": c["scenes"], "seed": config.build_seed if config.scenes.link_k else None})
    tokenizer = _hash({"scenes": scenes, "seed": config.build_seed, **{k: c["build"][k] for k in TOKENIZER_SETTINGS}})
    build = _hash({"scenes": scenes, "seed": config.build_seed,
                   "build": {k: v for k, v in c["build"].items() if k not in _BUILD_SPEED_ONLY},
                   # scene_fit split cuts occurrences to the context: the model's context is then an input of the build
                   **({"context": config.model.max_seq_len} if config.build.scene_fit == "split" else {})})
    return {"ingest": ingest, "scenes": scenes, "tokenizer": tokenizer, "build": build}


@contextmanager
def claimed(folder: Path) -> Iterator[None]:
    """Hold FOLDER.lock while FOLDER is checked and made: another process that wants it waits, then
    finds it made. The lock is the kernel's (flock), so a run that dies releases it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)


def link_into(source: Path, target: Path) -> None:
    """Put SOURCE (a file or a folder) at TARGET as hard links, in place of what TARGET held. Stages
    write through a temporary and a rename, never in place, so a link never changes under another run."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.linking")
    if source.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp, copy_function=_link_or_copy)
    else:
        tmp.unlink(missing_ok=True)
        _link_or_copy(str(source), str(tmp))
    if target.is_dir():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, old)
        shutil.rmtree(old)
    os.replace(tmp, target)
