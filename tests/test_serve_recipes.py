"""The recipes in docs/serving.md, run where they can be: lm-evaluation-harness's `local-completions`
model against `ltm serve` on a multiple-choice task (loglikelihood requests: token ids, echo,
logprobs), checked against transformers' own log-likelihoods of the same continuations."""

import json

import pytest
import torch
import yaml
from conftest import ROOT, serve
from transformers import AutoModelForCausalLM, AutoTokenizer

from ltm.serve.app import create_app
from ltm.serve.engine import Engine

# A task written for this test: which continuation the tiny corpus makes likelier.
DOCS = [
    {"question": "THEON: Can a thing be", "choices": ["measured", "purple"], "answer": 0},
    {"question": "MIRA: Perhaps. But what do you mean by a", "choices": ["thing?", "seven"], "answer": 0},
    {"question": "THEON: A stone first. When I weigh it, the scale", "choices": ["presses back", "sings loudly"], "answer": 0},
    {"question": "ЛИДА: Давай разберёмся по", "choices": ["порядку.", "лестнице"], "answer": 0},
]


def test_lm_eval_scores_a_multiple_choice_task_through_the_server(exported, tmp_path, monkeypatch):
    lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install lm-eval)")
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS), encoding="utf-8")
    task = {"task": "ltm_tiny_choice", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(tmp_path / "docs.jsonl")}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}", "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{answer}}", "metric_list": [{"metric": "acc"}]}
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "ltm_tiny_choice.yaml").write_text(yaml.safe_dump(task, allow_unicode=True), encoding="utf-8")

    engine = Engine(exported)
    server, url = serve(create_app(engine))
    try:
        # The recipe of docs/serving.md, as Python: the same model_args as on the command line.
        results = lm_eval.simple_evaluate(
            model="local-completions",
            model_args={"model": "hf", "base_url": f"{url}/v1/completions", "tokenizer_backend": "huggingface",
                        "tokenizer": str(exported), "max_length": engine.context, "num_concurrent": 1, "max_retries": 1},
            tasks=["ltm_tiny_choice"], task_manager=TaskManager(include_path=str(tmp_path / "tasks")), log_samples=True)
    finally:
        server.should_exit = True
        engine.close()
    samples = results["samples"]["ltm_tiny_choice"]
    assert len(samples) == len(DOCS) and 0 <= results["results"]["ltm_tiny_choice"]["acc,none"] <= 1

    tokenizer = AutoTokenizer.from_pretrained(str(exported))
    model = AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    for sample in samples:
        for (context, continuation), ((loglikelihood, _greedy),) in zip(
                [tuple(a) for a in sample["arguments"]], sample["resps"]):
            whole = tokenizer.encode(context + continuation, add_special_tokens=False)
            split = len(tokenizer.encode(context, add_special_tokens=False))
            with torch.no_grad():
                logits = model(torch.tensor([[tokenizer.bos_token_id] + whole])).logits[0, :-1]
            expected = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(whole)[:, None])[split:].sum()
            assert loglikelihood == pytest.approx(float(expected), abs=1e-3), (context, continuation)


def test_the_documented_recipes_name_what_the_tests_run():
    text = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    assert "--model local-completions" in text and "tokenizer_backend=huggingface" in text
    assert "vllm serve" in text and "--format gguf" in text and "llama-server" in text
