"""Thinking-behaviour probes: how often generated text questions itself, points back, changes voice,
holds a tension, checks itself and sets subgoals, read off with per-language lexicons
(ltm/data/probes/LANG.yaml; a language without a file is read with the English one).

A rate means little alone: a model that copies its training text copies its markers too. So a probe
rate is always reported next to the same rate on the training data, both from `rates_per_1k_tokens`
with the model tokenizer's count.

Probes (the verification and subgoal probes follow Gandhi et al. 2025, "Cognitive behaviors that enable
self-improving reasoners"; verification covers their verification and backtracking):
    self_questioning  a question the thinker puts to themselves ("I wonder", "what do I mean?")
    back_reference    pointing back to what was said ("as I said", "вернёмся к")
    role_change       another voice or perspective ("from her point of view", a new speaker label)
    tension           contrast or opposition ("but", "однако")
    verification      checking and backtracking ("let me check", "wait, no", «я ошибся»)
    subgoal           setting subgoals ("first, ...", "let's break this down", «во-первых»)

`validate` scores the probes on a labelled set (ltm/data/probes/labelled.jsonl, written for ltm);
bench/probe_quality.py prints the figures.

Structured outputs: `valid_scene_structure` and `valid_structure_fraction` (definition below).
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from ltm.formats import Role, Tension, Vector
from ltm.markup import BODY, HEADER, SCENE_BEGIN, SCENE_END, TENSION_LEVELS
from ltm.scenes.lexicon import compile_entries

PROBES = ("self_questioning", "back_reference", "role_change", "tension", "verification", "subgoal")
PROBE_KEYS = ("phrases", "not", "patterns", "turns")
PROBE_LANGUAGES = ("en", "ru")  # the languages with a file under ltm/data/probes
LABELLED = resources.files("ltm").joinpath("data/probes/labelled.jsonl")
_ENTRY_EDGES = re.compile(r"[\w*](?:.*[\w*])?", re.DOTALL)  # a word character or a star at each end
_JOINER = re.compile(r"[\s,—–-]*")


def _normalise(text: str) -> str:
    """Curly apostrophes as straight ones; same length, so offsets hold."""
    return text.replace("’", "'")


def _fold(text: str) -> str:
    """What phrases are matched against: lower case, «ё» as «е» (writers use both). Lower-casing keeps
    the length of Latin and Cyrillic text, so spans index the text and its folded form alike."""
    return _normalise(text).lower().replace("ё", "е")


@dataclass(frozen=True)
class Probe:
    """One probe of one language, compiled from its entry in ltm/data/probes/LANG.yaml."""

    name: str
    phrases: re.Pattern
    lookalikes: re.Pattern  # "not" entries: a phrase match that overlaps one is not counted
    patterns: tuple[re.Pattern, ...] = ()
    turns: re.Pattern | None = None

    def spans(self, text: str, folded: str) -> list[tuple[int, int]]:
        """Where the probe fires: `text` is normalised, `folded` is `_fold(text)`."""
        blocked = [m.span() for m in self.lookalikes.finditer(folded)]
        found = [m.span() for m in self.phrases.finditer(folded) if not _overlaps(m.span(), blocked)]
        for pattern in self.patterns:
            found += [m.span() for m in pattern.finditer(text)]
        if self.turns is not None:
            found += _turn_changes(self.turns, text)
        return found

    def count(self, text: str, folded: str) -> int:
        return _events(self.spans(text, folded), text)

    @staticmethod
    def from_data(name: str, data: dict) -> "Probe":
        unknown = set(data) - set(PROBE_KEYS)
        if unknown:
            raise ValueError(f"probe {name}: unknown keys {sorted(unknown)}; known: {', '.join(PROBE_KEYS)}")
        phrases = _entries(name, data.get("phrases"))
        lookalikes = _entries(name, data.get("not"))
        return Probe(
            name=name,
            phrases=compile_entries(phrases),
            lookalikes=compile_entries(lookalikes),
            patterns=tuple(re.compile(p) for p in data.get("patterns") or []),
            turns=re.compile(data["turns"]) if data.get("turns") else None,
        )


def _entries(probe: str, values: list | None) -> list[str]:
    """Entries folded like the text; each must start and end with a word character (or a star),
    since they are matched on word boundaries: "plan:" could never match."""
    entries = [_fold(str(v)).strip() for v in values or [] if str(v).strip()]
    for entry in entries:
        if not _ENTRY_EDGES.fullmatch(entry):
            raise ValueError(f"probe {probe}: entry {entry!r} must start and end with a letter or digit")
    return entries


def _overlaps(span: tuple[int, int], blocked: list[tuple[int, int]]) -> bool:
    """Whether `span` overlaps one of `blocked` (sorted, disjoint: finditer's order)."""
    i = bisect_left(blocked, (span[1],)) - 1  # the last blocked span starting before `span` ends
    return i >= 0 and blocked[i][1] > span[0]


def _turn_changes(labels: re.Pattern, text: str) -> list[tuple[int, int]]:
    """Speaker labels whose name differs from the label before: a second voice takes over."""
    changes, previous = [], None
    for match in labels.finditer(text):
        name = match.group("name")
        if previous is not None and name != previous:
            changes.append(match.span())
        previous = name
    return changes


def _events(spans: list[tuple[int, int]], text: str) -> int:
    """How many separate events the spans make: overlapping spans, and spans with only spaces, commas
    or dashes between them, are one ("as I said earlier", "wait, that's not right", a phrase inside a
    matched question)."""
    count, end = 0, -1
    for start, stop in sorted(spans):
        if count and (start <= end or _JOINER.fullmatch(text, end, start)):
            end = max(end, stop)
        else:
            count += 1
            end = stop
    return count


@dataclass(frozen=True)
class ProbeSet:
    lang: str
    probes: dict[str, Probe]

    def count(self, text: str) -> dict[str, int]:
        """Events of each probe in `text`: its matches, adjacent ones merged (see `_events`)."""
        text = _normalise(text)
        folded = _fold(text)
        return {name: probe.count(text, folded) for name, probe in self.probes.items()}

    @staticmethod
    def from_data(lang: str, data: dict) -> "ProbeSet":
        unknown = set(data) - set(PROBES)
        missing = set(PROBES) - set(data)
        if unknown or missing:
            raise ValueError(f"probes {lang}: unknown {sorted(unknown)}, missing {sorted(missing)}; expected {', '.join(PROBES)}")
        return ProbeSet(lang, {name: Probe.from_data(name, data[name] or {}) for name in PROBES})


@lru_cache(maxsize=None)
def load_probes(lang: str) -> ProbeSet:
    """The built-in probes for `lang`; other languages get the English ones."""
    name = lang if lang in PROBE_LANGUAGES else "en"
    text = resources.files("ltm").joinpath(f"data/probes/{name}.yaml").read_text(encoding="utf-8")
    return ProbeSet.from_data(name, yaml.safe_load(text))


def rates_per_1k_tokens(texts: Sequence[str], lang: str | Sequence[str], count_tokens: Callable[[str], int]) -> dict[str, float]:
    """Matches per 1,000 tokens of each probe over all `texts` together (pooled, so long texts weigh
    more). `lang` is one language for all texts or one per text; `count_tokens` gives a text's length
    in the model tokenizer's tokens. No tokens at all gives 0.0."""
    langs = [lang] * len(texts) if isinstance(lang, str) else list(lang)
    if len(langs) != len(texts):
        raise ValueError(f"{len(langs)} languages for {len(texts)} texts")
    totals = dict.fromkeys(PROBES, 0)
    tokens = 0
    for text, text_lang in zip(texts, langs):
        for name, n in load_probes(text_lang).count(text).items():
            totals[name] += n
        tokens += count_tokens(text)
    return {name: 1000 * n / tokens if tokens else 0.0 for name, n in totals.items()}


# --- quality on the labelled set ------------------------------------------------------------------


def read_labelled(path: str | Path | None = None) -> list[dict]:
    """The labelled passages: {"id", "lang", "text", "labels": {probe: bool}} per line."""
    text = Path(path).read_text(encoding="utf-8") if path is not None else LABELLED.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def validate(labelled_path: str | Path | None = None, lang: str | None = None) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support (gold positives) of each probe on a labelled set (the
    built-in one by default), optionally one language's passages only. A passage is predicted
    positive for a probe when its count is above zero. With no predicted positives precision is 1.0;
    with no gold positives recall is 1.0 (nothing was missed)."""
    passages = [p for p in read_labelled(labelled_path) if lang is None or p["lang"] == lang]
    tallies = {name: [0, 0, 0] for name in PROBES}  # true positives, false positives, false negatives
    for passage in passages:
        counts = load_probes(passage["lang"]).count(passage["text"])
        for name, tally in tallies.items():
            gold, predicted = bool(passage["labels"][name]), counts[name] > 0
            tally[0] += gold and predicted
            tally[1] += predicted and not gold
            tally[2] += gold and not predicted
    return {name: _scores(*tally) for name, tally in tallies.items()}


def _scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


# --- structured outputs ---------------------------------------------------------------------------
#
# A text CLAIMS a scene structure when it holds a scene marker (<|scene|> or <|/scene|>) or a scene
# key: `roles`, `tension` or `vector`, lower case, optionally quoted, followed by a colon, at the start
# of a line or after `{` or `,` (YAML or JSON). The lens header ("Roles: ...", "Роли: ...") is prose
# for the reader and claims nothing.
#
# A claiming text is VALID when every claimed form is:
# - markers: <|scene|> and <|/scene|> alternate, opening first and closing last (no nesting, nothing
#   left open, e.g. by a sample cut off mid-scene); inside each scene, with marker tokens removed,
#   there is text; and a scene has at most one <|body|>, with text after it (up to <|header|> or the end).
# - data: the scene is the first fenced block (```yaml / ```json / ```) holding a scene key, else the
#   JSON object that holds the first key, else the YAML lines from the first key's line to the next
#   blank line. It parses to a mapping with all three keys, where `roles` is a list of names or of
#   Role records, `tension` a level (low, medium, high) or a Tension record, `vector` a non-empty
#   direction or a Vector record (the ltm.scene field types, ltm.formats).

SCENE_KEYS = ("roles", "tension", "vector")
_SCENE_MARK = re.compile("|".join(map(re.escape, (SCENE_BEGIN, SCENE_END))))
_ANY_MARK = re.compile(r"<\|[^|<>\s]{1,40}\|>")
_KEY = re.compile(r"(?m)(?:^|[{,])[ \t]*[\"']?(?:roles|tension|vector)[\"']?[ \t]*:")
_FENCE = re.compile(r"```[\w-]*[ \t]*\n(.*?)```", re.DOTALL)


def claims_scene_structure(text: str) -> bool:
    return bool(_SCENE_MARK.search(text) or _KEY.search(text))


def valid_scene_structure(text: str) -> bool:
    """True when `text` claims a scene structure and every claimed form is valid (see above)."""
    has_marks, has_keys = bool(_SCENE_MARK.search(text)), bool(_KEY.search(text))
    if not (has_marks or has_keys):
        return False
    return (not has_marks or _valid_markers(text)) and (not has_keys or _valid_data(_scene_data(text)))


def valid_structure_fraction(texts: Iterable[str]) -> float | None:
    """Of the texts that claim a scene structure, the fraction with a valid one; None when none claims."""
    claimed = [text for text in texts if claims_scene_structure(text)]
    return sum(map(valid_scene_structure, claimed)) / len(claimed) if claimed else None


def _valid_markers(text: str) -> bool:
    marks = list(_SCENE_MARK.finditer(text))
    opening = [m.group() == SCENE_BEGIN for m in marks]
    if len(marks) % 2 or opening != [True, False] * (len(marks) // 2):
        return False
    return all(_valid_scene_body(text[a.end() : b.start()]) for a, b in zip(marks[::2], marks[1::2]))


def _valid_scene_body(inside: str) -> bool:
    if not _ANY_MARK.sub("", inside).strip():
        return False
    parts = inside.split(BODY)
    if len(parts) > 2:
        return False
    return len(parts) == 1 or bool(_ANY_MARK.sub("", parts[1].split(HEADER)[0]).strip())


def _scene_data(text: str) -> object:
    """The claimed scene as parsed data (None when it does not parse)."""
    fenced = [block for block in _FENCE.findall(text) if _KEY.search(block)]
    if fenced:
        return _parse(fenced[0])
    key = _KEY.search(text)
    decoder = json.JSONDecoder()
    for brace in (m.start() for m in re.finditer(r"\{", text[: key.end()])):
        try:
            data, end = decoder.raw_decode(text, brace)
        except json.JSONDecodeError:
            continue
        if end > key.start():
            return data
    line_start = text.rfind("\n", 0, key.start()) + 1
    return _parse(re.split(r"\n[ \t]*\n", text[line_start:], maxsplit=1)[0])


def _parse(block: str) -> object:
    try:
        return json.loads(block)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(block)
    except yaml.YAMLError:
        return None


def _valid_data(data: object) -> bool:
    if not isinstance(data, dict) or any(key not in data for key in SCENE_KEYS):
        return False
    roles, tension, vector = (data[key] for key in SCENE_KEYS)
    try:
        if not isinstance(roles, list):
            return False
        for role in roles:
            if not (isinstance(role, str) and role.strip()):
                Role.model_validate(role)
        if not (isinstance(tension, str) and tension in TENSION_LEVELS):
            Tension.model_validate(tension)
        if not (isinstance(vector, str) and vector.strip()):
            Vector.model_validate(vector)
    except ValidationError:
        return False
    return True
