"""The optional LLM judge: any OpenAI-compatible endpoint counts the four cognitive behaviours of
Gandhi et al. (2025) — verification, backtracking, subgoal setting, backward chaining — in each
generated sample, through the shared ask/validate/cache loop (answers cached by sample text,
prompt version and model). eval.json reports the mean count per sample of each behaviour."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ltm.config import LLMConfig
from ltm.llm import AnswerCache, Answers, Query, ask_all, language_name, load_prompt

PROMPT = "judge_behaviours"


class Counts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verification: int = Field(ge=0)
    backtracking: int = Field(ge=0)
    subgoal_setting: int = Field(ge=0)
    backward_chaining: int = Field(ge=0)


def _parse(content: str) -> Counts:
    start, end = content.find("{"), content.rfind("}")
    try:
        return Counts.model_validate(json.loads(content[start : end + 1]))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"expected a JSON object with four non-negative integers: {str(exc)[:200]}") from None


def _load(value: dict) -> Counts | None:
    try:
        return Counts.model_validate(value)
    except ValidationError:
        return None


ANSWERS: Answers[Counts] = Answers(
    parse=_parse,
    correction=lambda problem: f"Your answer was not valid: {problem}. Answer with ONLY the JSON object.",
    gave_up="no valid answer in {attempts} attempts: {problem}",
    load=_load,
    dump=lambda counts: counts.model_dump(),
)


def judge(texts: list[str], langs: list[str], config: LLMConfig, client=None) -> dict:
    """Mean count per sample of each behaviour over the samples the judge answered, and how many it did."""
    prompt = load_prompt(PROMPT)
    queries = [Query(AnswerCache.key(text, f"{PROMPT}:{prompt.version}", config.model),
                     prompt.render(text=text, language=language_name(lang))) for text, lang in zip(texts, langs)]
    answered = [o.answer for o in ask_all(queries, ANSWERS, config, client=client) if o.answer is not None]
    if not answered:
        return {"samples_judged": 0, "model": config.model}
    means = {key: sum(getattr(a, key) for a in answered) / len(answered) for key in Counts.model_fields}
    return {"samples_judged": len(answered), "model": config.model, "mean_per_sample": means}
