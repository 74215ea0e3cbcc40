"""Shared fixtures: a tiny corpus written by the tests and a tiny run config."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
# LTM_SHARED_CORPORA points elsewhere, e.g. from a git worktree that has no ../shared beside it.
SHARED_CORPORA = Path(os.environ.get("LTM_SHARED_CORPORA") or ROOT.parent / "shared" / "corpora")

EN_PARAGRAPHS = [
    "THEON: Can a thing be measured without being changed? I keep asking myself this.",
    "MIRA: Perhaps. But what do you mean by a thing? A stone, or a feeling?",
    "THEON: A stone first. When I weigh it, the scale presses back, yet the stone stays a stone.",
    "MIRA: And a feeling? When you name it, does it stay the same, or does it move?",
]
RU_PARAGRAPHS = [
    "ФЕОН: Помним ли мы прошлое или только пересказываем его? Я не уверен.",
    "ЛИДА: Давай разберёмся по порядку. Что ты видишь, когда вспоминаешь море?",
    "ФЕОН: Я вижу серую полосу и чаек. Но отца я не вижу — я знаю, что он был рядом.",
    "ЛИДА: Значит, часть картины — это рассказ, а не память. Не так ли?",
]


def write_corpus(folder: Path, copies: int = 3) -> Path:
    """Six small documents (three English, three Russian) plus a metadata sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(copies):
        en = [f"# Dialogue {i}"] + [f"{p} ({i}.{j})" for j, p in enumerate(EN_PARAGRAPHS)]
        ru = [f"# Диалог {i}"] + [f"{p} ({i}.{j})" for j, p in enumerate(RU_PARAGRAPHS)]
        (folder / f"en_{i}.md").write_text("\n\n".join(en * 3) + "\n", encoding="utf-8")
        (folder / f"ru_{i}.md").write_text("\n\n".join(ru * 3) + "\n", encoding="utf-8")
        files[f"en_{i}.md"] = {"author": "Test Author", "phase": "logic"}
        files[f"ru_{i}.md"] = {"author": "Тестовый Автор", "phase": "myth"}
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"files": files}, allow_unicode=True), encoding="utf-8")
    return folder


TINY_CONFIG = {
    "name": "tiny",
    "seed": 7,
    "scenes": {"min_tokens": 10, "max_tokens": 60},
    "build": {"vocab_size": 400, "heldout_docs": 0.3},
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 32},
    "train": {"steps": 30, "batch_size": 8, "lr": 5e-3, "warmup_steps": 5, "eval_every": 10, "eval_batches": 2},
    "eval": {"samples": ["THEON:"], "sample_tokens": 8},
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def tiny_config(tmp_path: Path, corpus: Path) -> Path:
    config = dict(TINY_CONFIG, ingest={"paths": [str(corpus)]}, out_dir=str(tmp_path / "runs"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    """A tiny model trained on the tiny corpus and exported (`ltm export`): the serving tests' model."""
    from ltm.cli import main

    tmp = tmp_path_factory.mktemp("serve")
    corpus = write_corpus(tmp / "corpus")
    config = dict(TINY_CONFIG, ingest={"paths": [str(corpus)]}, out_dir=str(tmp / "runs"))
    config["model"] = dict(config["model"], max_seq_len=64)
    config["eval"] = {"memorization_per_bucket": 2, "samples_per_prompt": 1, "sample_tokens": 4, "data_sample_tokens": 1000}
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--run-dir", str(tmp / "run")]) == 0
    assert main(["export", str(tmp / "run"), "-o", str(tmp / "hf")]) == 0
    return tmp / "hf"


def serve(app):
    """Run an ASGI app on a free loopback port in a thread; returns (server, base URL). Stop it with
    `server.should_exit = True`."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}"


class ScriptedEngine:
    """A stand-in for ltm.serve.engine.Engine that answers from a script and records each call, for
    tests of what the server sends to the model and does with well-formed or broken answers."""

    name = "scripted"
    roles = ("system", "user", "assistant")

    @staticmethod
    def encode(prompt: str) -> list[str]:  # words count as tokens
        return prompt.split()

    def __init__(self, reply):
        self.reply = reply  # prompt -> text
        self.calls: list[dict] = []

    def chat_prompt(self, messages: list[dict]) -> str:
        return "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in messages) + "<|assistant|>"

    def fit_chat(self, messages: list[dict], max_tokens: int) -> tuple[str, int]:
        return self.chat_prompt(messages), 0  # a script has no context to outgrow

    def stream(self, prompt, max_tokens, temperature, top_p, stop, seed):
        self.calls.append({"prompt": prompt, "seed": seed, "stop": stop, "max_tokens": max_tokens})
        yield self.reply(prompt)

    def generate(self, prompt, max_tokens, temperature, top_p, stop, seed, logprobs=None, echo=False):
        return ScriptedGeneration(self.stream(prompt, max_tokens, temperature, top_p, stop, seed), self.encode(prompt))


class ScriptedGeneration:
    """What ScriptedEngine.generate returns: ltm.serve.engine.Generation's interface over scripted
    text, one piece per word. The text may be an exception to raise instead (a failing model)."""

    def __init__(self, texts, prompt_ids):
        self.texts, self.prompt_ids = texts, prompt_ids
        self.finish_reason, self.completion_tokens, self.cancelled = None, 0, False

    def __iter__(self):
        from ltm.serve.engine import Piece

        for text in self.texts:
            if isinstance(text, Exception):
                raise text
            for word in text.split(" ") if text else []:
                self.completion_tokens += 1
                yield Piece(word if self.completion_tokens == 1 else " " + word, self.completion_tokens, None)
        self.finish_reason = "stop"

    def cancel(self):
        self.cancelled = True

    def prompt_pieces(self):
        return []
