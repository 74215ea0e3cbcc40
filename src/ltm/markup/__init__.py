"""The scene markup: ltm's own vocabulary, spelled here once and imported everywhere else.

- The scene's words: tension levels, loop steps, lens names, the roles of a dialogue's turns and
  how a document's text labels a turn.
- Marker tokens: the special tokens the builder inserts by id (never produced by encoding text)
  and the model reads scene state from; `marker_ids` names their ids the way
  LtmConfig.scene_token_ids does ("scene", "tension:high", "loop:new", "lens:critic", ...).
- The chat template, its role markers and its end of turn.
- How a scene is written under each lens (`ltm.markup.lenses`), for the build and for the server's
  scene queries alike.

Nothing here imports torch or transformers: every stage may import it.
"""

from __future__ import annotations

TENSION_LEVELS = ("low", "medium", "high")
LOOP_STEPS = ("claim", "doubt", "inversion", "new direction")
BUILTIN_LENSES = ("plain", "scene", "questions", "critic", "child")  # need only the scene
GENERATIVE_LENSES = ("commentary", "analogy", "paraphrase")  # need a text a model wrote for the scene
LENSES = BUILTIN_LENSES + GENERATIVE_LENSES
CHAT_ROLES = ("system", "user", "assistant")
TURN_LABELS = {"user": "User", "assistant": "Assistant"}  # how Document.text spells a dialogue's turns


def marker(name: str) -> str:
    """The token string of the marker called `name`: "scene" -> "<|scene|>"."""
    return f"<|{name}|>"


def marker_name(token: str) -> str:
    """The inverse of `marker`: "<|loop:new|>" -> "loop:new"."""
    return token[2:-2]


EOT = marker("endoftext")
SCENE_BEGIN = marker("scene")
SCENE_END = marker("/scene")
HEADER = marker("header")  # the scene's annotation, as a lens renders it
BODY = marker("body")  # the scene's own text follows
TENSION_TOKENS = {level: marker(f"tension:{level}") for level in TENSION_LEVELS}
# A loop step's token is named by its first word ("new direction" -> <|loop:new|>).
LOOP_TOKENS = {step: marker(f"loop:{step.split()[0]}") for step in LOOP_STEPS}
LENS_PREFIX = "lens:"
CHAT_TOKENS = {role: marker(role) for role in CHAT_ROLES}
END_OF_TURN = marker("end")


def lens_token(lens: str) -> str:
    return marker(LENS_PREFIX + lens)


SPECIAL_TOKENS = [
    EOT, SCENE_BEGIN, SCENE_END, HEADER, BODY, *TENSION_TOKENS.values(), *LOOP_TOKENS.values(),
    *(lens_token(lens) for lens in LENSES), *CHAT_TOKENS.values(), END_OF_TURN,
]
# The scene-structure markers, as the model's scene state and the probes read them.
SCENE_MARKERS = [SCENE_BEGIN, SCENE_END, HEADER, BODY, *TENSION_TOKENS.values(), *LOOP_TOKENS.values(), *(lens_token(lens) for lens in LENSES)]

CHAT_TEMPLATE = (
    "{% for message in messages %}" + marker("{{ message['role'] }}") + "{{ message['content'] }}" + END_OF_TURN + "{% endfor %}"
    "{% if add_generation_prompt %}" + CHAT_TOKENS["assistant"] + "{% endif %}"
)


class Marker(str):
    """A special token among a rendering's pieces: the builder inserts its id instead of encoding it."""


def marker_ids(tokenizer) -> dict[str, int]:
    """The scene markers' ids under their names ("scene", "/scene", "header", "body",
    "tension:low", "loop:new", "lens:critic", ...), for the markers `tokenizer` has."""
    vocab = tokenizer.get_vocab()
    return {marker_name(token): vocab[token] for token in SCENE_MARKERS if token in vocab}
