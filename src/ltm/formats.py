"""Typed records for every file ltm writes. docs/formats.md describes them for readers.

Each JSONL record carries a `schema` tag (e.g. "ltm.scene/1"); a breaking change bumps the number.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ltm.markup import TENSION_LEVELS, TURN_LABELS

DOCUMENT_SCHEMA = "ltm.document/1"
SCENE_SCHEMA = "ltm.scene/2"
MANIFEST_SCHEMA = "ltm.manifest/2"
EVAL_SCHEMA = "ltm.eval/2"
MEMORY_SCHEMA = "ltm.memory/1"
QA_SCHEMA = "ltm.qa/1"
SAMPLE_SCHEMA = "ltm.sample/1"
TIMES_SCHEMA = "ltm.times/1"


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- documents (ingest) -------------------------------------------------------------------------


class Turn(Record):
    role: Literal["user", "assistant"]
    text: str
    time: str | None = None
    id: str | None = None

    def rendered(self) -> str:
        """The turn as Document.text holds it: "User: ..." or "Assistant: ..."."""
        return f"{TURN_LABELS[self.role]}: {self.text}"


def render_turns(turns: list[Turn]) -> str:
    """A dialogue's text: its turns rendered, one blank line between them."""
    return "\n\n".join(turn.rendered() for turn in turns)


class Encoding(Record):
    detected: str = Field(description="encoding the bytes were decoded with")
    repaired: list[str] = Field(default_factory=list, description="repairs applied, e.g. 'mojibake:cp1252'")


class Section(Record):
    """A titled part of a document (chapter, FB2 section); offsets index `text`."""

    title: str | None = None
    level: int = Field(1, ge=1, description="1 for top-level parts, 2 for their subsections, ...")
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class Document(Record):
    schema_: Literal["ltm.document/1"] = Field(DOCUMENT_SCHEMA, alias="schema")
    id: str
    source: str = Field(description="path of the file the document came from")
    format: str = Field(description="reader that produced it: text, markdown, ...")
    title: str
    author: str | None = None
    lang: str = Field(description="ru, en or other")
    text: str
    turns: list[Turn] | None = None
    sections: list[Section] = Field(default_factory=list, description="structure kept from the source (chapters)")
    breaks: list[int] = Field(default_factory=list, description="offsets where the source marks a scene break")
    notes: list[str] = Field(default_factory=list, description="footnote bodies, kept apart from the main text")
    meta: dict = Field(default_factory=dict, description="user tags (phase, kind, ...) and reader extras")
    encoding: Encoding
    sha256: str

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def turn_spans(self) -> list[tuple[int, int]] | None:
        """Where each turn stands in `text` ("User: ..." included), or None for a document that is
        not a dialogue, or whose text is not its turns rendered (a hand-edited file)."""
        if self.turns is None or self.text != render_turns(self.turns):
            return None
        spans, start = [], 0
        for turn in self.turns:
            end = start + len(turn.rendered())
            spans.append((start, end))
            start = end + 2
        return spans


# --- scenes ---------------------------------------------------------------------------------------


class Span(Record):
    start: int = Field(ge=0, description="character offset into the document text")
    end: int = Field(ge=0, description="exclusive end offset")


class Role(Record):
    name: str
    function: str | None = Field(None, description="speaker, inner voice, objector, quoted voice, or an annotator's own word")


class Question(Record):
    text: str
    kind: Literal["self", "addressed"] = Field(description="self: the thinker asks themselves; addressed: asked of another")


class TextSpan(Record):
    """Where in the scene's text an annotation was read: the evidence for it."""

    start: int = Field(ge=0, description="character offset into the scene text")
    end: int = Field(ge=0, description="exclusive end offset")


class Tension(Record):
    poles: list[str] = Field(default_factory=list, max_length=2)
    level: Literal[TENSION_LEVELS] = "low"  # type: ignore[valid-type]  # the tuple unpacks into the allowed values
    evidence: list[TextSpan] = Field(default_factory=list, description="the words the level was read from (contrasts, opposites, conflict); empty for low")


class Vector(Record):
    direction: str | None = None
    destination: str | None = None
    hint: Literal["explicit", "latent", "none"] = "none"
    evidence: TextSpan | None = Field(None, description="the sentence or question the direction was read from")


class Reference(Record):
    scene_id: str
    score: float


class SceneTurn(Record):
    """The dialogue turn a scene holds: a scene of a dialogue is one whole turn."""

    index: int = Field(ge=0, description="position of the turn in document.turns")
    role: Literal["user", "assistant"]


class Scene(Record):
    schema_: Literal["ltm.scene/2"] = Field(SCENE_SCHEMA, alias="schema")
    scene_id: str
    doc_id: str
    index: int = Field(ge=0, description="position of the scene in its document")
    span: Span
    text: str = Field(description="exactly document.text[span.start:span.end]")
    lang: str
    roles: list[Role] = Field(default_factory=list)
    tension: Tension = Field(default_factory=Tension)
    vector: Vector = Field(default_factory=Vector)
    loop: list[str] = Field(default_factory=list, description="loop steps seen in the scene, in order: claim, doubt, inversion, new direction")
    questions: list[Question] = Field(default_factory=list)
    backrefs: list[str] = Field(default_factory=list, description="phrases that point back to earlier statements ('as I said')")
    references: list[Reference] = Field(default_factory=list, description="the most related earlier scenes, best first")
    turn: SceneTurn | None = Field(None, description="for a scene of a dialogue: the turn it holds (its text starts with the turn's label)")
    annotator: str
    meta: dict = Field(default_factory=dict, description="document tags copied for later stages (phase, author)")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- fact sets (facts) --------------------------------------------------------------------------------


class QAPair(Record):
    """One line of QA.jsonl (`ltm facts`): a question about one attribute of one made-up person."""

    schema_: Literal["ltm.qa/1"] = Field(QA_SCHEMA, alias="schema")
    id: str = Field(description="PERSON:ATTRIBUTE")
    person: str = Field(description="the person's id; their biographies are documents PERSON-r0, PERSON-r1, ...")
    name: str
    lang: str
    attribute: str = Field(description="birth_date, birth_city, university, profession or teacher")
    question: str
    answer: str
    distractors: list[str] = Field(min_length=3, max_length=3, description="three wrong answers other people of the language have")
    split: Literal["train", "heldout"] = Field(description="train: the person's biographies are training text; heldout: never trained")
    in_training: bool = Field(description="this pair itself is training text (facts.qa_train_share)")
    prompts: dict[str, str] = Field(description="text the answer continues, by form: question ('Question: ...\\nAnswer:') "
                                                "and statement (the first biography template up to the value)")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- dataset manifest (build) -----------------------------------------------------------------------


class ShardInfo(Record):
    path: str = Field(description="file name inside the dataset folder")
    split: Literal["train", "heldout"]
    tokens: int


class Manifest(Record):
    """DATASET_DIR/manifest.json. Provenance rows live beside it in segments_<split>.npz (columns
    start, end, doc, scene, lens, pass_index, times_seen, phase); `docs`, `lenses` and `phases` are
    the tables their integer columns index. A scene's id is `{docs[doc]}#{scene:04d}`."""

    schema_: Literal["ltm.manifest/2"] = Field(MANIFEST_SCHEMA, alias="schema")
    tokenizer: str = Field(description="tokenizer folder, relative to the dataset folder")
    tokenizer_sha256: str
    vocab_size: int
    dtype: Literal["uint16", "uint32"]
    seed: int
    regime: str = Field(description="the repetition regime, e.g. spiral=100")
    curriculum: str = Field(description="shuffle, tag:<key> or difficulty:<levels>")
    budget_tokens: int
    shards: list[ShardInfo]
    docs: list[str]
    doc_tags: dict[str, dict] = Field(default_factory=dict, description="per document: lang, author, phase and other tags, for evaluation by group")
    lenses: list[str]
    phases: list[str]
    heldout_docs: list[str]
    stats: dict

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def split_tokens(self, split: str) -> int:
        return sum(s.tokens for s in self.shards if s.split == split)

    def scene_id(self, doc: int, scene: int) -> str:
        return f"{self.docs[doc]}#{scene:04d}"


# --- evaluation -------------------------------------------------------------------------------------


class Baselines(Record):
    unigram_bpb: float
    untrained_bpb: float


class GroupBpb(Record):
    bpb: float
    bytes: int


class ProbeRate(Record):
    model_rate: float = Field(description="matches per 1,000 generated tokens")
    data_rate: float = Field(description="matches per 1,000 tokens of training text")
    model_events: int | None = Field(None, description="events in the generated samples (EVAL.samples.jsonl)")
    model_tokens: int | None = Field(None, description="tokens of the generated samples")
    model_rate_ci95: list[float] | None = Field(None, description="exact Poisson (Garwood) 95% interval of model_rate")
    model_hits_in_frames: int | None = Field(None, description="matches whose words are a lens frame's own words")


class ProbeHit(Record):
    probe: str
    start: int = Field(ge=0, description="character offset into the sample's text")
    end: int = Field(ge=0)
    text: str
    frame_overlap: bool = Field(description="the matched words occur in a built-in lens frame of the sample's language")


class GeneratedSample(Record):
    """One line of EVAL.samples.jsonl: a continuation the probes counted, kept so they can be recounted."""

    schema_: Literal["ltm.sample/1"] = Field(SAMPLE_SCHEMA, alias="schema")
    prompt: str
    lang: str
    text: str = Field(description="the continuation, marker tokens left out")
    raw: str = Field(description="the continuation with its marker tokens")
    tokens: int = Field(description="the text's length in the model tokenizer's tokens")
    events: dict[str, int] = Field(description="probe -> events (adjacent matches merged)")
    hits: list[ProbeHit]

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class QAScore(Record):
    n: int = Field(description="questions asked")
    mc: float = Field(description="multiple-choice accuracy by log-likelihood (chance 0.25)")
    mc_ci95: list[float] = Field(description="Wilson 95% interval of mc")
    em: float = Field(description="exact-match accuracy of the greedy answer")


class QAGroup(QAScore):
    by_attribute: dict[str, QAScore]
    by_language: dict[str, QAScore]


class QAItems(Record):
    """Every pair's outcome in one prompt form, so that intervals can resample the items."""

    ids: list[str] = Field(description="pair ids (PERSON:ATTRIBUTE) in the order of the strings below")
    mc: str = Field(description="one character per pair: 1 when multiple choice was right, else 0")
    em: str = Field(description="one character per pair: 1 when the greedy answer matched exactly, else 0")


class QAResult(Record):
    source: str = Field(description="the QA JSONL asked")
    scoring: Literal["mean", "sum"] = Field(description="options ranked by mean or summed log-probability of their tokens")
    chance_mc: float
    forms: dict[str, dict[str, QAGroup]] = Field(description="prompt form (question, statement) -> group of people (train: "
                                                 "biographies trained, pair not; qa_trained: the pair trained too; heldout: never trained) -> scores")
    items: dict[str, QAItems] = Field(default_factory=dict, description="prompt form -> every pair's outcome")


class ClozeScore(Record):
    n: int = Field(description="sentences asked")
    accuracy: float = Field(description="share where the true word ranks first")
    accuracy_ci95: list[float] = Field(description="Wilson 95% interval of accuracy")
    mrr: float = Field(description="mean reciprocal rank of the true word")
    chance: float = Field(description="1 / candidates")


class ClozeGroup(ClozeScore):
    by_language: dict[str, ClozeScore]


class ClozeResult(Record):
    candidates: int
    min_word_chars: int
    by_split: dict[str, ClozeGroup] = Field(description="heldout: sentences of documents never trained; train: sentences read "
                                                        "verbatim in training")
    paraphrased: str = Field(description="why paraphrased sentences are not measured")


class EvalResult(Record):
    schema_: Literal["ltm.eval/2"] = Field(EVAL_SCHEMA, alias="schema")
    model: str = Field("", description="the checkpoint evaluated")
    heldout_bpb: float = Field(description="bits per byte on the held-out documents, plain")
    heldout_tokens: int
    heldout_bytes: int
    baselines: Baselines
    heldout_by: dict[str, dict[str, GroupBpb]] = Field(default_factory=dict, description="document, author, phase, lens -> group -> bpb")
    wikitext: dict = Field(default_factory=dict, description="{bpb, tokens, bytes} on WikiText-2 validation, or {skipped: why}")
    memorization: dict = Field(default_factory=dict, description="overall and by_times_seen: exact and token_match, model and control")
    probes: dict[str, ProbeRate] = Field(default_factory=dict)
    probe_validation: dict = Field(default_factory=dict, description="precision and recall of each probe on ltm's labelled set")
    valid_scene_structure: float | None = Field(None, description="share of samples claiming a scene structure that have a valid one")
    diversity: dict[str, float] = Field(default_factory=dict)
    judge: dict = Field(default_factory=dict, description="LLM judge: samples_judged, model, mean_per_sample of four behaviours")
    samples: list[dict] = Field(default_factory=list)
    qa: QAResult | None = Field(None, description="questions about a fact set's people; none without a QA file")
    cloze: ClozeResult | None = Field(None, description="cloze on real text; none when the run has no real text")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StageTimes(Record):
    """RUN/times.json: where the wall time of a run's last `ltm run` went (ltm.stages.run)."""

    schema_: Literal["ltm.times/1"] = Field(TIMES_SCHEMA, alias="schema")
    stages: dict[str, float] = Field(description="seconds per stage, in the order run: ingest, facts, scenes, build (with "
                                     "--shared: making the shared stage or waiting for the run that makes it), link (--shared: "
                                     "hard-linking the shared stages in), train, initiation, eval, report; a stage kept from "
                                     "an earlier run is absent")
    total_s: float = Field(ge=0, description="seconds from the start of `ltm run` (after its imports) to the end")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- scene memory (serve) ----------------------------------------------------------------------------


class MemoryRecord(Record):
    """One line of MEMORY_DIR/NAMESPACE/records.jsonl: a scene the server remembers (ltm.serve.memory)."""

    schema_: Literal["ltm.memory/1"] = Field(MEMORY_SCHEMA, alias="schema")
    id: int = Field(ge=0, description="the record's id in its namespace, also its id in the FAISS index")
    text: str = Field(min_length=1)
    meta: dict = Field(default_factory=dict, description="the client's tags; for stored exchanges kind (chat, completion, scene) and model")
    created: float = Field(description="Unix time in seconds")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- JSON Schemas ------------------------------------------------------------------------------------

SCHEMAS: dict[str, type[BaseModel]] = {
    "document": Document,
    "scene": Scene,
    "manifest": Manifest,
    "eval": EvalResult,
    "memory": MemoryRecord,
    "qa": QAPair,
    "sample": GeneratedSample,
    "times": StageTimes,
}


def json_schema(name: str) -> dict:
    """The JSON Schema of one file format, as committed under docs/schemas/NAME.schema.json."""
    schema = SCHEMAS[name].model_json_schema(by_alias=True, mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"ltm.{name}", **schema}


if __name__ == "__main__":
    # Regenerate the committed schemas: python -m ltm.formats docs/schemas
    import json
    import sys
    from pathlib import Path

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")
    folder.mkdir(parents=True, exist_ok=True)
    for schema_name in SCHEMAS:
        (folder / f"{schema_name}.schema.json").write_text(json.dumps(json_schema(schema_name), indent=2, ensure_ascii=False) + "\n")
