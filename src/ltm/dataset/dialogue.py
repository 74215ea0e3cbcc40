"""Dialogues in the chat form: how `ltm build` writes a scene that holds a dialogue turn when
`build.dialogue` is `chat` (docs/build.md, "Dialogues").

A turn reads as the tokenizer's chat template renders it, `<|role|>text<|end|>`: the tokens the
server gives the model, with the turn's "User: " label (how Document.text spells a turn) left out
and no scene markers around it. A system prompt, when set, opens each dialogue as a system turn.
The user's turns and the system prompt go under the loss mask: the model reads them and learns the
assistant's turns, their end-of-turn tokens included. Lenses do not apply: a turn has one form.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ltm.dataset.scenes_table import SceneInfo
from ltm.dataset.shards import ShardWriter
from ltm.config import BuildConfig
from ltm.markup import CHAT_TOKENS, END_OF_TURN, SCENE_BEGIN, SCENE_END, TURN_LABELS


class ChatForm:
    def __init__(self, config: BuildConfig, ids: dict[str, int], encode: Callable[[list[str]], list[np.ndarray]]):
        """`ids`: special token -> id; `encode`: texts -> token ids (never marker ids)."""
        self.on = config.dialogue == "chat"
        self.learn_user = config.learn_user_turns
        self.ids = ids
        self.system = None
        if self.on and config.system_prompt:
            self.system = np.concatenate([[ids[CHAT_TOKENS["system"]]], encode([config.system_prompt])[0],
                                          [ids[END_OF_TURN]]]).astype(np.uint32)

    def applies(self, scene: SceneInfo) -> bool:
        return self.on and scene.turn_role is not None

    def text(self, scene: SceneInfo, text: str) -> str:
        """The scene's text as its plain form encodes it: a turn without its label."""
        return text.removeprefix(f"{TURN_LABELS[scene.turn_role]}: ") if self.applies(scene) else text

    def frame(self, scene: SceneInfo) -> tuple[int, int]:
        """The marker ids around the scene's plain form: the turn's role and end, or the scene's."""
        if self.applies(scene):
            return self.ids[CHAT_TOKENS[scene.turn_role]], self.ids[END_OF_TURN]
        return self.ids[SCENE_BEGIN], self.ids[SCENE_END]

    def add(self, writer: ShardWriter, scene: SceneInfo, ids: np.ndarray, provenance: dict[str, int]) -> None:
        """Write one occurrence of the scene, the system prompt before a dialogue's first turn,
        and the loss mask over what is not learned."""
        if not self.applies(scene):
            writer.add(ids, provenance)
            return
        if self.system is not None and scene.turn_index == 0:
            writer.add(self.system, None, learn=False)
        writer.add(ids, provenance, learn=scene.turn_role != "user" or self.learn_user)
