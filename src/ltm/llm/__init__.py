"""Optional LLM support: an OpenAI-compatible chat client, an on-disk answer cache, prompt files,
and the cached, self-correcting ask loop that the LLM-backed stages share."""

from ltm.llm.ask import REFUSED_REQUEST, Answers, Outcome, Query, ask_all
from ltm.llm.cache import AnswerCache
from ltm.llm.client import ChatClient, LLMError, Prompt, language_name, load_prompt, map_bounded

__all__ = [
    "language_name",
    "REFUSED_REQUEST",
    "AnswerCache",
    "Answers",
    "ChatClient",
    "LLMError",
    "Outcome",
    "Prompt",
    "Query",
    "ask_all",
    "load_prompt",
    "map_bounded",
]
