"""PVQ, the structured scene query behind /v1/scenes: a scene, its tension and vector, an archetype or
lens and a question go in; a meta-scene (roles, tension, vector), a response, a conclusion and an
optional self-commentary come out, with optional critique-then-revise rounds.

The prompt is one scene in the training data's own markup: the query is the scene's header
(`<|scene|><|lens:L|><|header|><|tension:T|>` then labelled lines SCENE:, TENSION:, VECTOR:,
ARCHETYPE:, LENS:, MEMORY:, QUESTION:, ANSWER WITH:) and the answer is its body, which the prompt
opens with `<|body|>ROLES:` for the model to go on with ROLES:, TENSION:, VECTOR:, RESPONSE:,
CONCLUSION: and COMMENTARY: lines.

A generation whose sections do not all validate is tried again with another seed (TRIES in all);
then the best one is repaired deterministically: roles, tension and vector from the heuristic scene
annotator run over the query and the generated text, falling back to the query's own tension and
vector; the response is the generated text; the conclusion its last sentence; the commentary the
annotation as the `scene` lens's header. The answer is always a whole structure, and `repaired`
says when it was mended.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ltm.markup.lenses import check_lenses, header_text, render
from ltm.markup import BODY, HEADER, SCENE_BEGIN, TENSION_TOKENS, Marker, lens_token
from ltm.formats import Role, Scene, Span, Vector
from ltm.ingest.lang import detect_language
from ltm.scenes.annotate import annotate
from ltm.scenes.lexicon import builtin_lexicon
from ltm.scenes.sentences import rough_sentence_spans
from ltm.serve.fields import Seed, lone_surrogate
from ltm.serve.memory import NAMESPACE_PATTERN, MemoryStore, snippets
from ltm.serve.prompt import Markup, Prompt

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
TRIES = 2  # generations per answer before it is repaired
ANSWER_SECTIONS = ("roles", "tension", "vector", "response", "conclusion", "commentary")
# Every label the prompts use: a generation that writes one ends the section before it, and the
# query's labels found in a generation (the model starting a new query) are dropped.
_LABEL = re.compile(r"^[ \t]*(ROLES|TENSION|VECTOR|RESPONSE|CONCLUSION|COMMENTARY|SCENE|ARCHETYPE|LENS|MEMORY|QUESTION|"
                    r"ANSWER WITH|CRITIQUE|REVISE)[ \t]*:", re.MULTILINE)
STOPS = ["\nSCENE:", "\nQUESTION:"]  # the model opening a new query: its answer is over
# A role is a short name: anything longer, or with a sentence's punctuation, is prose that ran into the ROLES line.
_ROLE_NAME = re.compile(r"[^.!?:;«»\"“”]{1,40}")
ROLE_NAME_WORDS = 5
NO_ANSWER = "(no answer: the model wrote no text)"
QUESTIONER = Role(name="questioner", function="speaker")  # every PVQ has at least the one who asks


class SceneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)  # a misspelt field in a YAML query is an error

    model: str | None = None
    scene: str = Field(min_length=1, description="what is happening")
    tension: str = ""
    vector: str = Field("", description="where it should go")
    archetype: str | None = None
    lens: str | None = None
    question: str = Field(min_length=1)
    critic_rounds: int = Field(0, ge=0, le=3)
    commentary: bool = True
    namespace: str | None = Field(None, pattern=NAMESPACE_PATTERN)
    memory_k: int = Field(3, ge=0, le=20)
    max_tokens: int = Field(256, ge=1, description="per generation")
    temperature: float = Field(0.7, ge=0, le=2)
    seed: Seed | None = None

    @field_validator("lens")
    @classmethod
    def _known_lens(cls, lens: str | None) -> str | None:
        if lens is not None:
            check_lenses([lens])
        return lens


def parse_request(body: bytes, content_type: str) -> SceneRequest:
    """The query from a JSON body, or a YAML one when the content type says so; ValueError says what is wrong."""
    yaml_body = content_type.split(";")[0].strip().lower() in YAML_TYPES
    try:
        data = yaml.safe_load(body) if yaml_body else json.loads(body)
    except (yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"the body is not valid {'YAML' if yaml_body else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a mapping of fields: scene, question, tension, vector, ...")
    if (problem := lone_surrogate(data)) is not None:
        raise ValueError(problem)
    try:
        return SceneRequest.model_validate(data)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())) from None


class MetaScene(BaseModel):
    roles: list[Role] = Field(min_length=1)
    tension: str = Field(min_length=1)
    vector: str = Field(min_length=1)
    lens: str | None


class Answer(BaseModel):
    """The sections of one answer; validating it is the check that nothing is missing or empty."""

    roles: list[Role] = Field(min_length=1)
    tension: str = Field(min_length=1)
    vector: str = Field(min_length=1)
    response: str = Field(min_length=1)
    conclusion: str = Field(min_length=1)
    commentary: str | None = Field(None, min_length=1)


class Critique(BaseModel):
    round: int
    critique: str
    revised: bool


class Remembered(BaseModel):
    id: int
    score: float
    text: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    generations: int = 0


class SceneResponse(BaseModel):
    id: str
    object: Literal["scene"] = "scene"
    model: str
    meta_scene: MetaScene
    response: str
    conclusion: str
    commentary: str | None
    critiques: list[Critique]
    memory: list[Remembered]
    repaired: bool
    usage: Usage


def answer_scene(engine, request: SceneRequest, memory: MemoryStore | None = None) -> SceneResponse:
    """Answer one PVQ with `engine` (ltm.serve.engine.Engine or anything with its stream/encode/name)."""
    asked = f"{request.scene}\n{request.question}"
    lang = detect_language(asked)
    hits = memory.search(request.namespace, asked, request.memory_k) if request.namespace else []
    write = _Writer(engine, request)
    prompt = query_prompt(request, snippets(hits), lang)
    attempts: list[dict[str, str]] = []
    while len(attempts) < TRIES and (not attempts or _validated(attempts[-1], request.commentary) is None):
        attempts.append(parse_sections("ROLES:" + write(prompt, len(attempts), STOPS)))
    best = max(attempts, key=lambda sections: len(_usable(sections)))  # the first of the fullest
    answer = _validated(best, request.commentary)
    repaired = answer is None
    answer = answer or repair(request, best, lang)

    critiques = []
    for round_ in range(1, request.critic_rounds + 1):
        critique, answer, revised = _critic_round(write, request, answer, round_, lang)
        critiques.append(Critique(round=round_, critique=critique, revised=revised))

    ident = f"scene-{uuid.uuid4().hex[:24]}"
    if request.namespace:
        memory.add(request.namespace, f"Scene: {request.scene}\nQuestion: {request.question}\nAnswer: {answer.response}\n"
                   f"Conclusion: {answer.conclusion}", {"kind": "scene", "id": ident, "model": engine.name})
    return SceneResponse(
        id=ident, model=engine.name,
        meta_scene=MetaScene(roles=answer.roles, tension=answer.tension, vector=answer.vector, lens=request.lens),
        response=answer.response, conclusion=answer.conclusion, commentary=answer.commentary if request.commentary else None,
        critiques=critiques, memory=[Remembered(id=h.id, score=h.score, text=h.text) for h in hits], repaired=repaired,
        usage=write.usage,
    )


# --- prompts -------------------------------------------------------------------------------------


def query_prompt(request: SceneRequest, remembered: str, lang: str) -> Prompt:
    """The query as a scene header in the training markup, and the body opened at ROLES:."""
    return _header(request, _query_lines(request, remembered), lang) + Marker(BODY) + "ROLES:"


def _query_lines(request: SceneRequest, remembered: str = "") -> list[str]:
    lines = [f"SCENE: {request.scene}"]
    lines += [f"TENSION: {request.tension}"] if request.tension else []
    lines += [f"VECTOR: {request.vector}"] if request.vector else []
    lines += [f"ARCHETYPE: {request.archetype}"] if request.archetype else []
    lines += [f"LENS: {request.lens}"] if request.lens else []
    lines += [f"MEMORY:\n{remembered}"] if remembered else []
    sections = ANSWER_SECTIONS if request.commentary else ANSWER_SECTIONS[:-1]
    return lines + [f"QUESTION: {request.question}", f"ANSWER WITH: {', '.join(s.upper() for s in sections)}"]


def _header(request: SceneRequest, lines: list[str], lang: str) -> Prompt:
    """The header's markers, then its lines as text: what the request carries cannot add a marker."""
    # The tension token is the annotator's reading of the query, as the scene lens marks training scenes.
    level = _annotation(request, "", lang)["tension"].level
    return Prompt([Markup(SCENE_BEGIN + lens_token(request.lens or "scene") + HEADER + TENSION_TOKENS[level]), "\n".join(lines)])


def _critic_round(write, request: SceneRequest, answer: Answer, round_: int, lang: str) -> tuple[str, Answer, bool]:
    """One critique (the `critic` lens over the response, as training renders it), then one revision."""
    pieces = render(_scene(answer.response, lang), "critic", pass_index=round_ - 1)
    critique = write(Prompt([*pieces[:-1], "\n"]), 10 * round_).strip()  # all but SCENE_END: the model writes the critique
    if not critique:
        return critique, answer, False
    lines = _query_lines(request) + [f"RESPONSE: {answer.response}", f"CRITIQUE: {critique}", "REVISE: RESPONSE, CONCLUSION"]
    revision = parse_sections("RESPONSE:" + write(_header(request, lines, lang) + Marker(BODY) + "RESPONSE:", 10 * round_ + 1, STOPS))
    response = revision.get("response", "")
    if not response:
        return critique, answer, False
    conclusion = revision.get("conclusion") or last_sentence(response)
    return critique, answer.model_copy(update={"response": response, "conclusion": conclusion}), True


class _Writer:
    """Generates with the request's sampling settings and counts every token for `usage`."""

    def __init__(self, engine, request: SceneRequest):
        self.engine, self.request, self.usage = engine, request, Usage()

    def __call__(self, prompt: str, offset: int, stops: list[str] | None = None) -> str:
        # Each generation gets its own seed, so a retry differs from the try before it.
        seed = None if self.request.seed is None else self.request.seed + offset
        text = "".join(self.engine.stream(prompt, self.request.max_tokens, self.request.temperature, 1.0, stops or [], seed))
        prompt_tokens = len(self.engine.encode(prompt))
        completion_tokens = len(self.engine.encode(text))
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        self.usage.total_tokens += prompt_tokens + completion_tokens
        self.usage.generations += 1
        return text


# --- parsing, validation, repair ------------------------------------------------------------------


def parse_sections(text: str) -> dict[str, str]:
    """Answer section -> its text, the first of each; other labels (a new query) end a section."""
    found: dict[str, str] = {}
    matches = list(_LABEL.finditer(text))
    for match, after in zip(matches, matches[1:] + [None]):
        body = text[match.end() : after.start() if after else len(text)].strip()
        found.setdefault(match.group(1).lower(), body)
    return {name: body for name, body in found.items() if name in ANSWER_SECTIONS}


def parse_roles(line: str) -> list[Role]:
    """"name (function), name, ..." as the scene lens writes roles; [] unless every entry looks like a role."""
    roles = []
    for entry in filter(None, (part.strip() for part in re.split(r"[,;\n]", line))):
        named = re.fullmatch(r"(.+?)\s*\(([^()]+)\)", entry)
        name, function = (named.group(1), named.group(2).strip()) if named else (entry, None)
        if not _ROLE_NAME.fullmatch(name) or len(name.split()) > ROLE_NAME_WORDS:
            return []
        roles.append(Role(name=name, function=function))
    return roles


def _usable(sections: dict[str, str]) -> dict:
    """The sections that can stand as they are, roles parsed. The prompt writes ROLES: itself, so that
    section holds whatever the model wrote first: it counts as roles only when the model went on to
    write another section's label."""
    usable: dict = {name: body for name, body in sections.items() if body and name != "roles"}
    roles = parse_roles(sections.get("roles", "")) if len(sections) > 1 else []
    return usable | ({"roles": roles} if roles else {})


def _validated(sections: dict[str, str], commentary: bool) -> Answer | None:
    try:
        answer = Answer.model_validate(_usable(sections))
    except ValidationError:
        return None
    return answer if answer.commentary or not commentary else None


def repair(request: SceneRequest, sections: dict[str, str], lang: str) -> Answer:
    """A whole answer from what the generation got right, the rest filled in deterministically."""
    usable = _usable(sections)
    # Labels out, so that the annotator does not take "RESPONSE:" for a speaker.
    generated = _LABEL.sub(" ", "\n".join(sections.values()))
    fields = _annotation(request, generated, lang)
    found_tension, found_vector = fields["tension"], fields["vector"]
    archetype = [Role(name=request.archetype, function="archetype")] if request.archetype else []
    roles = usable.get("roles") or (fields["roles"] + archetype) or [QUESTIONER]
    poles = " <-> ".join(found_tension.poles)
    tension = usable.get("tension") or poles or request.tension or found_tension.level
    explicit = found_vector.direction if found_vector.hint == "explicit" else None
    vector = usable.get("vector") or explicit or request.vector or found_vector.direction or request.question
    # The response is the text the structure could not place, or failing that all the generated text.
    unplaced = " ".join(body for name, body in sections.items() if name not in usable)
    response = usable.get("response") or " ".join(unplaced.split()) or " ".join(generated.split()) or NO_ANSWER
    conclusion = usable.get("conclusion") or last_sentence(response)
    commentary = usable.get("commentary")
    if commentary is None and request.commentary:
        # The annotation read back in the scene lens's words: what the answer is doing, stated plainly.
        commentary = header_text(_scene(response, lang, roles=roles, tension=found_tension, vector=Vector(direction=vector),
                                        loop=fields["loop"], questions=fields["questions"]))
    return Answer(roles=roles, tension=tension, vector=vector, response=response, conclusion=conclusion, commentary=commentary)


def last_sentence(text: str) -> str:
    spans = rough_sentence_spans(text)
    return text[spans[-1][0] : spans[-1][1]].strip() if spans else text.strip()


def _annotation(request: SceneRequest, generated: str, lang: str) -> dict:
    text = "\n".join(filter(None, (request.scene, request.tension, request.vector, request.question, generated)))
    return annotate(text, builtin_lexicon(lang))


def _scene(text: str, lang: str, **fields) -> Scene:
    """A response as a Scene record, so that the lens renderers can read it."""
    return Scene(scene_id="pvq", doc_id="pvq", index=0, span=Span(start=0, end=len(text)), text=text, lang=lang, annotator="pvq", **fields)
