"""User tags for documents: a `metadata.yaml` beside the files, plus tags given on the command line.

A sidecar looks like:

    defaults: {phase: logic}
    files:
      en/essay.md: {author: A. Pseudonym, phase: irony, title: "An essay"}

Keys under `files` are paths relative to the sidecar's folder. `title` and `author` fill the
document's fields; every other key becomes a tag in `meta`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

SIDECAR_NAME = "metadata.yaml"


class SidecarError(ValueError):
    pass


def load_sidecar(path: Path) -> tuple[dict, dict[str, dict]]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SidecarError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SidecarError(f"{path}: expected a mapping with 'defaults' and/or 'files'")
    defaults = raw.get("defaults") or {}
    files = raw.get("files") or {}
    if not isinstance(defaults, dict) or not isinstance(files, dict):
        raise SidecarError(f"{path}: 'defaults' and 'files' must be mappings")
    return defaults, {str(k): dict(v or {}) for k, v in files.items()}


def tags_for(file: Path, sidecars: dict[Path, tuple[dict, dict[str, dict]]]) -> dict:
    """Merge the tags of every sidecar above `file`, nearest last so it wins."""
    merged: dict = {}
    for folder in sorted(sidecars, key=lambda p: len(p.parts)):
        try:
            relative = file.resolve().relative_to(folder)
        except ValueError:
            continue
        defaults, files = sidecars[folder]
        merged.update(defaults)
        merged.update(files.get(relative.as_posix(), {}))
    return merged
