"""The committed JSON Schemas match the code, and real outputs validate against them."""

import json
from pathlib import Path

import jsonschema
import pytest

from ltm import stages
from ltm.config import load_config
from ltm.formats import SCHEMAS, json_schema

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schemas"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_is_current(name):
    committed = json.loads((DOCS / f"{name}.schema.json").read_text(encoding="utf-8"))
    assert committed == json_schema(name), "regenerate with: python -m ltm.formats docs/schemas"


def test_documents_and_scenes_validate(tmp_path, tiny_config):
    config = load_config(tiny_config)
    stages.ingest(config.ingest.paths, tmp_path / "docs.jsonl")
    stages.scenes(tmp_path / "docs.jsonl", tmp_path / "scenes.jsonl", config)
    for name, file in (("document", "docs.jsonl"), ("scene", "scenes.jsonl")):
        schema = json_schema(name)
        for line in (tmp_path / file).read_text(encoding="utf-8").splitlines():
            jsonschema.validate(json.loads(line), schema)
    broken = json.loads((tmp_path / "scenes.jsonl").read_text(encoding="utf-8").splitlines()[0])
    broken["tension"]["level"] = "extreme"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json_schema("scene"))
