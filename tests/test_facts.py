"""Fact sets: made-up people, their biographies as documents, questions with distractors, and a
split that never trains on a held-out person."""

import json

import jsonschema
import pytest
import yaml

from ltm import stages
from ltm.cli import main
from ltm.config import FactsConfig, load_config
from ltm.dataset import load_manifest
from ltm.dataset.reader import load_segments
from ltm.facts import ATTRIBUTES, make_facts
from ltm.formats import json_schema


def test_same_seed_same_fact_set_other_seed_other_people():
    config = FactsConfig(people=10, renderings=2, permute=True, qa_train_share=0.5)
    a, b, c = make_facts(config), make_facts(config), make_facts(config.model_copy(update={"seed": 1}))
    assert [d.text for d in a.documents] == [d.text for d in b.documents] and a.qa == b.qa
    assert {p.name for p in a.people} != {p.name for p in c.people}


def test_people_questions_and_documents_are_consistent():
    made = make_facts(FactsConfig(people=12, renderings=3, heldout_share=0.25, qa_train_share=0.5))
    for lang in ("en", "ru"):
        people = [p for p in made.people if p.lang == lang]
        assert len(people) == 12 and len({p.name for p in people}) == 12
        assert sum(p.split == "heldout" for p in people) == 3
        # Only train people have their QA in training, half of them.
        assert sum(p.qa_trained for p in people) == 4 and not any(p.qa_trained for p in people if p.split == "heldout")
    assert len(made.qa) == 24 * len(ATTRIBUTES)
    by_person = {p.id: p for p in made.people}
    for pair in made.qa:
        assert len(set(pair.distractors)) == 3 and pair.answer not in pair.distractors
        assert pair.answer == by_person[pair.person].values[pair.attribute] and pair.split == by_person[pair.person].split
        assert pair.name in pair.prompts["statement"] and pair.name in pair.prompts["question"]
    for doc in made.documents:
        person = by_person[doc.meta["person"]]
        assert doc.meta["split"] == person.split and person.name in doc.text
        if doc.meta["kind"] == "biography":  # every attribute is stated in every rendering
            assert all(value in doc.text for value in person.values.values())
    # Russian verbs agree with the person's gender.
    women = [d for d in made.documents if d.lang == "ru" and by_person[d.meta["person"]].gender == "f"]
    assert women and all("родился " not in d.text for d in women)


def test_too_few_people_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"facts": {"people": 1}}), encoding="utf-8")
    assert main(["facts", str(config), "-o", str(tmp_path / "d.jsonl"), "--qa", str(tmp_path / "qa.jsonl")]) == 1


def test_the_build_never_trains_on_a_heldout_person(tmp_path):
    """`ltm facts` -> scenes -> build: no token of a held-out person's biography is in the train split,
    whatever the seed and the held-out fraction."""
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump({"facts": {"people": 8, "renderings": 2, "heldout_share": 0.25, "qa_train_share": 0.5},
                                           "build": {"vocab_size": 400, "heldout_docs": 0.5}}), encoding="utf-8")
    assert main(["facts", str(config_path), "-o", str(tmp_path / "docs.jsonl"), "--qa", str(tmp_path / "qa.jsonl")]) == 0
    pairs = [json.loads(line) for line in (tmp_path / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    for pair in pairs[:10]:
        jsonschema.validate(pair, json_schema("qa"))
    heldout_people = {p["person"] for p in pairs if p["split"] == "heldout"}
    train_people = {p["person"] for p in pairs if p["split"] == "train"}
    assert len(heldout_people) == 4 and heldout_people.isdisjoint(train_people)
    config = load_config(config_path)
    stages.scenes(tmp_path / "docs.jsonl", tmp_path / "scenes.jsonl", config)
    for seed in (1, 2):
        config.seed = seed
        stages.build(config, tmp_path / "scenes.jsonl", tmp_path / f"ds{seed}")
        manifest = load_manifest(tmp_path / f"ds{seed}")
        trained = {manifest.docs[d].rsplit("-", 1)[0] for d in set(load_segments(tmp_path / f"ds{seed}", "train")["doc"].tolist())}
        held = {d.rsplit("-", 1)[0] for d in manifest.heldout_docs}
        assert trained == train_people and held == heldout_people


def test_a_run_adds_the_fact_set_to_the_ingested_documents(tmp_path, corpus):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"ingest": {"paths": [str(corpus)]}, "facts": {"people": 4}}), encoding="utf-8")
    docs = tmp_path / "docs.jsonl"
    stages.ingest([corpus], docs)
    ingested = len(docs.read_text(encoding="utf-8").splitlines())
    stages.facts(load_config(config), docs, tmp_path / "qa.jsonl", append=True)
    kinds = [json.loads(line)["format"] for line in docs.read_text(encoding="utf-8").splitlines()]
    assert kinds.count("facts") == 8 and len(kinds) == ingested + 8


@pytest.mark.parametrize("field", ["people", "renderings"])
def test_facts_config_refuses_negative_sizes(field):
    with pytest.raises(ValueError):
        FactsConfig(**{field: -1})


def test_each_rendering_has_its_own_qa_document_stating_every_answer():
    made = make_facts(FactsConfig(people=8, renderings=3, permute=True, qa_train_share=1.0, heldout_share=0.25))
    trained = [p for p in made.people if p.qa_trained]
    qa_docs = [d for d in made.documents if d.meta["kind"] == "qa"]
    assert len(qa_docs) == 3 * len(trained)
    answers = {p.id: [q.answer for q in made.qa if q.person == p.id] for p in trained}
    by_person: dict[str, list[str]] = {}
    for doc in qa_docs:
        assert all(answer in doc.text for answer in answers[doc.meta["person"]])
        by_person.setdefault(doc.meta["person"], []).append(doc.text)
    # The first is what QA.jsonl asks; the others word or order it differently for most people.
    assert sum(len(set(texts)) > 1 for texts in by_person.values()) > len(trained) // 2
