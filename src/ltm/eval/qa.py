"""Whether the model can *use* what it read: questions about a fact set's people (QA.jsonl,
ltm.qa/1), answered two ways (docs/eval.md, "QA"):

- multiple choice by log-likelihood: the answer and its three distractors each continue the
  prompt; the model is right when the answer scores strictly above every distractor. The score
  of option o (tokens t_1..t_n after context c) is mean log p(t_i | c, t_<i) over its n tokens
  (`scoring: mean`, length-normalised) or the sum (`scoring: sum`). Chance is 1/4.
- exact match: the greedy continuation of the prompt, stripped, starts with the answer, followed
  by its end or a character that is not a letter or digit.

Pairs are scored in two prompt forms (question: "Question: ...\\nAnswer:", statement: the
biography's own sentence up to the value) and reported apart for three groups of people: `train`
(biographies trained, this pair not: the Allen-Zhu test of extraction), `qa_trained` (the pair
itself was training text) and `heldout` (never trained: the figure chance gives), each overall, by
attribute and by language.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from ltm.config import QAEvalConfig
from ltm.eval.likelihood import continuation_logprobs
from ltm.eval.sample import continuations
from ltm.formats import QAGroup, QAItems, QAPair, QAResult, QAScore
from ltm.io import iter_jsonl
from ltm.log import error
from ltm.markup import SCENE_BEGIN

OPTIONS = 4  # the answer and three distractors


class QAError(ValueError):
    pass


def load_qa(path: Path) -> list[QAPair]:
    pairs, problems = [], []
    for line, record, problem in iter_jsonl(path):
        if problem is None:
            try:
                pairs.append(QAPair.model_validate(record))
                continue
            except ValueError as exc:
                problem = str(exc).splitlines()[0]
        problems.append(f"line {line}: {problem}")
    if problems:  # the good lines are still scored
        error(f"{path}: {len(problems)} lines are not QA pairs (ltm.qa/1) and are left out, e.g. {problems[0]}")
    if not pairs:
        raise QAError(f"{path}: no QA pairs")
    return pairs


def group_of(pair: QAPair) -> str:
    if pair.split == "heldout":
        return "heldout"
    return "qa_trained" if pair.in_training else "train"


def wilson(correct: int, n: int, z: float = 1.96) -> list[float]:
    """The Wilson score interval of a proportion (95% by default)."""
    if n == 0:
        return [0.0, 1.0]
    p = correct / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))]


def _score(mc: np.ndarray, em: np.ndarray) -> QAScore:
    return QAScore(n=len(mc), mc=float(mc.mean()) if len(mc) else 0.0, mc_ci95=wilson(int(mc.sum()), len(mc)),
                   em=float(em.mean()) if len(em) else 0.0)


def _group(pairs: list[QAPair], mc: np.ndarray, em: np.ndarray) -> QAGroup:
    def by(key: str) -> dict[str, QAScore]:
        values = np.asarray([getattr(p, key) for p in pairs])
        return {str(v): _score(mc[values == v], em[values == v]) for v in dict.fromkeys(values.tolist())}

    return QAGroup(**_score(mc, em).model_dump(), by_attribute=by("attribute"), by_language=by("lang"))


def exact_match(generated: str, answer: str) -> bool:
    text, answer = " ".join(generated.split()), " ".join(answer.split())
    return text.startswith(answer) and (len(text) == len(answer) or not text[len(answer)].isalnum())


def evaluate_qa(model, tokenizer, path: Path, config: QAEvalConfig, batch_size: int, seed: int) -> QAResult:
    pairs = load_qa(path)
    if config.max_pairs is not None:  # the same share of every group, drawn once per seed
        rng = random.Random(seed)
        kept = []
        for name in ("train", "qa_trained", "heldout"):
            members = [p for p in pairs if group_of(p) == name]
            kept.extend(rng.sample(members, min(len(members), config.max_pairs)))
        pairs = kept
    # Every scene a model reads opens with these two markers: so does every prompt.
    opening = [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(SCENE_BEGIN)]
    special = set(tokenizer.all_special_ids)

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    forms, items = {}, {}
    for form in config.forms:
        contexts = [opening + encode(p.prompts[form]) for p in pairs]
        options = [[encode(" " + o) for o in (p.answer, *p.distractors)] for p in pairs]
        logprob, count = continuation_logprobs(model, [c for c in contexts for _ in range(OPTIONS)],
                                               [o for row in options for o in row], batch_size)
        score = (logprob / count if config.scoring == "mean" else logprob).reshape(len(pairs), OPTIONS)
        mc = score[:, 0] > score[:, 1:].max(axis=1)
        longest = max(len(row[0]) for row in options)
        generated = continuations(model, contexts, longest + 2, 0.0, None, tokenizer.eos_token_id, seed)
        texts = [tokenizer.decode(next((ids[:k] for k, t in enumerate(ids) if t in special), ids)) for ids in generated]
        em = np.asarray([exact_match(t, p.answer) for t, p in zip(texts, pairs)])
        names = np.asarray([group_of(p) for p in pairs])
        forms[form] = {name: _group([p for p, g in zip(pairs, names) if g == name], mc[names == name], em[names == name])
                       for name in ("train", "qa_trained", "heldout") if (names == name).any()}
        items[form] = QAItems(ids=[p.id for p in pairs], mc="".join("01"[bool(v)] for v in mc), em="".join("01"[bool(v)] for v in em))
    return QAResult(source=str(path), scoring=config.scoring, chance_mc=1 / OPTIONS, forms=forms, items=items)
