"""eval.qa: the batched log-likelihood scorer, multiple choice and exact match on a fact set, and
the split that keeps test people out of training."""

import json

import numpy as np
import pytest
import torch
import yaml

from ltm.cli import main
from ltm.dataset import load_manifest
from ltm.dataset.reader import load_segments
from ltm.eval.likelihood import continuation_logprobs
from ltm.eval.qa import exact_match, wilson
from ltm.model import LtmConfig, LtmForCausalLM


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LtmForCausalLM(LtmConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, max_position_embeddings=16)).eval()


def test_the_batched_scorer_equals_one_pair_at_a_time_and_the_chain_rule(model):
    rng = np.random.default_rng(0)
    contexts = [rng.integers(1, 50, rng.integers(1, 12)).tolist() for _ in range(9)]
    continuations = [rng.integers(1, 50, rng.integers(1, 6)).tolist() for _ in range(9)]
    batched, count = continuation_logprobs(model, contexts, continuations, batch_size=4)
    alone = [continuation_logprobs(model, [c], [o], batch_size=1)[0][0] for c, o in zip(contexts, continuations)]
    assert np.allclose(batched, alone, atol=1e-4) and count.tolist() == [len(o) for o in continuations]
    # log p(a b | c) = log p(a | c) + log p(b | c a)
    whole = continuation_logprobs(model, [[3, 4]], [[5, 6]])[0][0]
    parts = continuation_logprobs(model, [[3, 4], [3, 4, 5]], [[5], [6]])[0].sum()
    assert whole == pytest.approx(parts, abs=1e-4)
    with torch.no_grad():  # and is the model's own softmax
        logits = model(torch.tensor([[3, 4]])).logits[0, -1]
    assert continuation_logprobs(model, [[3, 4]], [[5]])[0][0] == pytest.approx(torch.log_softmax(logits, -1)[5].item(), abs=1e-5)
    # Too long for the context: the oldest context tokens go, the continuation stays whole.
    assert continuation_logprobs(model, [list(range(1, 30))], [[7, 8]])[1][0] == 2


def test_exact_match_needs_the_whole_answer_then_a_boundary():
    assert exact_match(" Paris, 1901", "Paris") and exact_match("Paris", "Paris") and exact_match("  New  York.", "New York")
    assert not exact_match(" Parisian", "Paris") and not exact_match(" Pari", "Paris") and not exact_match("London", "Paris")


def test_wilson_interval_holds_the_proportion_and_narrows():
    low, high = wilson(25, 100)
    assert low < 0.25 < high and high - low > wilson(250, 1000)[1] - wilson(250, 1000)[0]
    assert wilson(0, 0) == [0.0, 1.0] and wilson(10, 10)[1] == 1.0


def fact_run(tmp_path, steps: int):
    config = {
        "name": "facts", "seed": 5, "out_dir": str(tmp_path / "runs"),
        "facts": {"people": 8, "languages": ["en"], "heldout_share": 0.25, "qa_train_share": 0.5, "renderings": 4, "permute": True},
        "scenes": {"min_tokens": 20, "max_tokens": 200, "link_k": 0},
        "build": {"vocab_size": 400},
        "model": {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 96},
        "train": {"steps": steps, "batch_size": 8, "lr": 1e-2, "warmup_steps": 10, "eval_every": steps, "logger": "none"},
        "eval": {"memorization_per_bucket": 4, "samples_per_prompt": 1, "sample_tokens": 8, "data_sample_tokens": 1000,
                 "prompts": str(tmp_path / "prompts.yaml"), "qa": {"forms": ["statement"]}},
    }
    (tmp_path / "prompts.yaml").write_text(yaml.safe_dump({"en": ["He was"]}))
    path = tmp_path / "facts.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--run-dir", str(run_dir)]) == 0
    return run_dir, json.loads((run_dir / "eval.json").read_text())


def test_a_model_trained_on_a_fact_set_answers_train_people_above_chance_and_never_read_a_test_person(tmp_path):
    run_dir, result = fact_run(tmp_path, steps=300)
    qa = result["qa"]["forms"]["statement"]
    assert result["qa"]["chance_mc"] == 0.25 and result["qa"]["scoring"] == "mean"
    assert set(qa) == {"train", "qa_trained", "heldout"}
    train = qa["train"]
    assert train["n"] == 3 * 5 and set(train["by_attribute"]) == {"birth_date", "birth_city", "university", "profession", "teacher"}
    assert set(train["by_language"]) == {"en"} and train["by_language"]["en"]["n"] == train["n"]
    assert train["mc"] > 0.25 and train["mc_ci95"][0] > 0.25 - 0.2  # 15 questions: well above a quarter
    assert qa["heldout"]["n"] == 2 * 5
    # Every pair's outcome is kept, and the group figures recount from it.
    items = result["qa"]["items"]["statement"]
    assert len(items["ids"]) == len(items["mc"]) == len(items["em"]) == sum(g["n"] for g in qa.values())
    by_id = {p["id"]: p for p in (json.loads(line) for line in (run_dir / "qa.jsonl").read_text(encoding="utf-8").splitlines())}
    test_items = [c == "1" for i, c in zip(items["ids"], items["mc"]) if by_id[i]["split"] == "train" and not by_id[i]["in_training"]]
    assert sum(test_items) / len(test_items) == pytest.approx(train["mc"])
    # The QA split: no test (held-out) person's text is in the train split.
    pairs = [json.loads(line) for line in (run_dir / "qa.jsonl").read_text(encoding="utf-8").splitlines()]
    test_people = {p["person"] for p in pairs if p["split"] == "heldout"}
    manifest = load_manifest(run_dir / "dataset")
    trained = {manifest.docs[d].rsplit("-", 1)[0] for d in set(load_segments(run_dir / "dataset", "train")["doc"].tolist())}
    assert test_people and test_people.isdisjoint(trained)


def test_cloze_masks_a_content_word_and_draws_distractors_of_its_language():
    import random

    from ltm.config import ClozeConfig
    from ltm.eval.cloze import make_items

    texts = [("The lantern maker asked a question of the river. Every evening the river answered with silence and fog.", "en"),
             ("Кузнец долго смотрел на огонь и молчал. Потом он взял молот и ударил по холодному железу.", "ru")]
    items = make_items(texts, ClozeConfig(items=10, candidates=3, min_word_chars=5), random.Random(0))
    assert len(items) == 4
    for prefix, suffix, words, lang in items:
        assert prefix and len(words) == 3 and len(set(words)) == 3 and len(words[0]) >= 5
        source = next(t for t, lg in texts if lg == lang)
        assert f"{prefix} {words[0]}{suffix}" in source
        assert all(w in source for w in words[1:])  # distractors come from the same language's text


def test_poisson_interval_and_frame_overlap_of_probe_hits():
    from ltm.eval.samples import poisson_ci, probe_hits

    assert poisson_ci(0) == (0.0, pytest.approx(3.689, abs=1e-3))
    low, high = poisson_ci(10)
    assert low == pytest.approx(4.795, abs=1e-3) and high == pytest.approx(18.39, abs=1e-2)
    # A lens frame's own words fire self_questioning: flagged; a question of the text's own is not.
    counts, hits = probe_hits("The questions this passage asks: I wonder whether the river remembers.", "en")
    assert counts["self_questioning"] >= 1
    assert any(not h.frame_overlap and h.probe == "self_questioning" for h in hits)
    counts, framed = probe_hits("The critic asks: what did it take for granted? And yet the river flows.", "en")
    flags = {h.text.strip(): h.frame_overlap for h in framed}
    assert flags["what did it take for granted?"] and flags["And yet"]
    assert counts["tension"] >= 1 and counts["self_questioning"] >= 1
