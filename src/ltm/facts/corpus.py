"""A fact set: made-up people with five attributes each, their biographies as ordinary ltm
documents, and questions about every attribute (Allen-Zhu & Li, *Physics of Language Models 3.1*,
bioS; written for ltm, in English and Russian).

- People are split per language, whole: `heldout_share` of them are *held-out people*, whose
  biographies carry the document tag `split: heldout` (the build never trains on them; their
  questions measure chance). The rest are *train people* (`split: train`).
- `qa_train_share` of the train people also have their question-answer pairs written as a training
  document (the Allen-Zhu protocol); questions are then asked about the other train people.
- Each person has `renderings` biographies; each draws one template per attribute anew, and with
  `permute` its sentences in a new order. A person whose QA pairs are trained has as many QA
  documents, the first with the questions QA.jsonl asks, the others with their wordings drawn anew
  (and with `permute` in a new order), so K renderings read once cover each fact as often as one
  rendering read K times.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from ltm.config import FactsConfig
from ltm.facts.names import FactsError, cities, full_names, universities
from ltm.formats import Document, Encoding, QAPair

ATTRIBUTES = ("birth_date", "birth_city", "university", "profession", "teacher")
GENDERED = re.compile(r"\{([^{}|]*)\|([^{}|]*)\}")


@cache
def language_data(lang: str) -> dict:
    return yaml.safe_load(resources.files("ltm.data.facts").joinpath(f"{lang}.yaml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Person:
    id: str
    lang: str
    gender: str  # "m" or "f": Russian verbs and English pronouns agree with it
    name: str
    values: dict[str, str]
    split: str  # "train" or "heldout"
    qa_trained: bool  # the person's question-answer pairs are training text


@dataclass
class FactSet:
    people: list[Person]
    documents: list[Document]
    qa: list[QAPair]


def fill(template: str, person: Person, value: str = "") -> str:
    """A template with the person's gender forms, name and `value` put in."""
    gendered = GENDERED.sub(lambda m: m.group(1) if person.gender == "m" else m.group(2), template)
    return gendered.replace("{name}", person.name).replace("{value}", value)


def _people(lang: str, config: FactsConfig, rng: random.Random) -> tuple[list[Person], dict[str, list[str]]]:
    """The people of one language, and the pools their values were drawn from."""
    data, n = language_data(lang), config.people
    genders = [rng.choice("mf") for _ in range(n)]
    names = full_names(rng, data["names"], genders)
    # Pools smaller than the people, so values repeat across people as in bioS (many are born in one city).
    size = max(4, n // 3)
    pools = {"birth_city": cities(rng, data["places"], size), "university": universities(rng, data["places"], size),
             "profession": list(data["professions"]), "teacher": full_names(rng, data["names"], [rng.choice("mf") for _ in range(size)])}
    order = list(range(n))
    rng.shuffle(order)
    heldout = set(order[: round(config.heldout_share * n)])
    train = [i for i in order if i not in heldout]
    qa_trained = set(train[: round(config.qa_train_share * len(train))])
    people = []
    for i in range(n):
        date = data["date"].format(day=rng.randint(1, 28), month=rng.choice(data["months"]), year=rng.randint(1900, 1999))
        values = {"birth_date": date, **{attribute: rng.choice(pool) for attribute, pool in pools.items()}}
        people.append(Person(f"facts-{lang}-{i:04d}", lang, genders[i], names[i], values,
                             "heldout" if i in heldout else "train", i in qa_trained))
    return people, pools


def _document(doc_id: str, person: Person, text: str, kind: str, seed: int) -> Document:
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Document(id=doc_id, source=f"ltm facts (seed {seed})", format="facts", title=person.name, author="ltm facts",
                    lang=person.lang, text=text, meta={"kind": kind, "person": person.id, "split": person.split},
                    encoding=Encoding(detected="utf-8"), sha256=sha256)


def _biography(person: Person, rng: random.Random, permute: bool) -> str:
    attributes = language_data(person.lang)["attributes"]
    sentences = [fill(rng.choice(attributes[a]["templates"]), person, person.values[a]) for a in ATTRIBUTES]
    if permute:
        rng.shuffle(sentences)
    return " ".join(sentences)


def _pairs(person: Person, people: list[Person], pools: dict[str, list[str]], rng: random.Random) -> list[QAPair]:
    """One QA pair per attribute. Distractors are values other people of the language have, so every
    option was read in training as someone's; the pool fills in when too few people differ."""
    data = language_data(person.lang)
    same_language = [p for p in people if p.lang == person.lang]
    pairs = []
    for attribute in ATTRIBUTES:
        spec, answer = data["attributes"][attribute], person.values[attribute]
        others = sorted({p.values[attribute] for p in same_language} - {answer})
        if len(others) < 3:
            others = sorted(set(pools.get(attribute, others)) - {answer})
        if len(others) < 3:
            raise FactsError(f"facts: {attribute} has {len(others) + 1} distinct values in {person.lang}; "
                             "three distractors need four: ask for more people")
        question = fill(rng.choice(spec["questions"]), person)
        statement = fill(spec["templates"][0].split("{value}")[0], person).rstrip()
        pairs.append(QAPair(
            id=f"{person.id}:{attribute}", person=person.id, name=person.name, lang=person.lang, attribute=attribute,
            question=question, answer=answer, distractors=rng.sample(others, 3), split=person.split,
            in_training=person.qa_trained,
            prompts={"question": f"{data['qa']['question']} {question}\n{data['qa']['answer']}", "statement": statement},
        ))
    return pairs


def qa_text(pairs: list[QAPair], person: Person | None = None, rng: random.Random | None = None, permute: bool = False) -> str:
    """A person's question-answer pairs as a training document reads them; given the person and a
    random source, with each question's wording drawn anew (and with `permute` the pairs shuffled)."""
    lines = [f"{pair.prompts['question']} {pair.answer}" for pair in pairs]
    if person is not None and rng is not None:
        data = language_data(person.lang)
        lines = [f"{data['qa']['question']} {fill(rng.choice(data['attributes'][pair.attribute]['questions']), person)}\n"
                 f"{data['qa']['answer']} {pair.answer}" for pair in pairs]
        if permute:
            rng.shuffle(lines)
    return "\n\n".join(lines)


def make_facts(config: FactsConfig) -> FactSet:
    """The people of every language, their biographies and QA documents, and every QA pair."""
    if config.people < 2:
        raise FactsError(f"facts.people={config.people}: a fact set needs at least 2 people per language")
    rng = random.Random(config.seed)
    people, pools = [], {}
    for lang in config.languages:
        found, pools[lang] = _people(lang, config, random.Random(f"{config.seed}:{lang}"))
        people.extend(found)
    documents, qa = [], []
    for person in people:
        for r in range(config.renderings):
            text = _biography(person, random.Random(f"{config.seed}:{person.id}:{r}"), config.permute)
            documents.append(_document(f"{person.id}-r{r}", person, text, "biography", config.seed))
        pairs = _pairs(person, people, pools[person.lang], rng)
        qa.extend(pairs)
        if person.qa_trained:
            documents.append(_document(f"{person.id}-qa", person, qa_text(pairs), "qa", config.seed))
            for r in range(1, config.renderings):
                text = qa_text(pairs, person, random.Random(f"{config.seed}:{person.id}:qa{r}"), config.permute)
                documents.append(_document(f"{person.id}-qa{r}", person, text, "qa", config.seed))
    return FactSet(people, documents, qa)
