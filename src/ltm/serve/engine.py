"""The generation engine behind the server: one loaded model and tokenizer, a lock so requests take
turns on the device, and token-by-token decoding with the KV cache (so a response can stream)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import ltm.model  # noqa: F401  (registers LtmForCausalLM with the Auto classes)
from ltm.model.cache import KVCache
from ltm.model.export import from_llama
from ltm.model.modeling import LtmForCausalLM, _pick


class Engine:
    def __init__(self, model_dir: Path, device: str = "auto"):
        self.name = Path(model_dir).name
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        loaded = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
        # A plain-Llama export is moved into our class, whose generation uses our KV cache.
        self.model = (loaded if isinstance(loaded, LtmForCausalLM) else from_llama(loaded)).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.context = self.model.config.max_position_embeddings
        self.lock = threading.Lock()

    def chat_prompt(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def stream(self, prompt: str, max_tokens: int, temperature: float, top_p: float, stop: list[str], seed: int | None) -> Iterator[str]:
        """Yield the text of each new token; ends at eos, a stop string, max_tokens or a full context."""
        ids = [self.tokenizer.bos_token_id] + self.tokenizer.encode(prompt, add_special_tokens=False)
        ids = ids[-(self.context - 1) :]
        max_tokens = min(max_tokens, self.context - len(ids))
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else torch.seed() % 2**63)
        with self.lock:
            cache = KVCache()
            logits = self.model(torch.tensor([ids], device=self.device), cache=cache).logits[:, -1]
            produced: list[int] = []
            text = ""
            for _ in range(max_tokens):
                token = int(_pick_top_p(logits, temperature, top_p, generator))
                if token == self.tokenizer.eos_token_id:
                    return
                produced.append(token)
                full = self.tokenizer.decode(produced, skip_special_tokens=True)
                piece, text = full[len(text) :], full
                hit = next((s for s in stop if s in text), None)
                if hit is not None:
                    cut = text.index(hit)
                    if cut > len(text) - len(piece):
                        yield piece[: cut - (len(text) - len(piece))]
                    return
                if piece:
                    yield piece
                logits = self.model(torch.tensor([[token]], device=self.device), cache=cache).logits[:, -1]


def _pick_top_p(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    if temperature <= 0 or top_p >= 1:
        return _pick(logits, temperature, None, generator)[0]
    probs = torch.softmax(logits.float()[0] / temperature, -1)
    ordered, index = probs.sort(descending=True)
    keep = ordered.cumsum(0) - ordered < top_p  # the smallest set whose mass reaches top_p
    ordered = torch.where(keep, ordered, torch.zeros_like(ordered))
    return index[torch.multinomial(ordered / ordered.sum(), 1, generator=generator)][0]
