"""Optional LLM support: an OpenAI-compatible chat client, an on-disk answer cache, prompt files."""

from ltm.llm.cache import AnswerCache
from ltm.llm.client import ChatClient, LLMError, Prompt, load_prompt, map_bounded

__all__ = ["AnswerCache", "ChatClient", "LLMError", "Prompt", "load_prompt", "map_bounded"]
