"""The generation engine behind the server: one loaded model and tokenizer, and a Batcher that
decodes every concurrent request together (serve/batching.py). This side turns token ids into
text as they arrive, so a response can stream, and applies stop strings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ltm.model.export import end_token_ids
from ltm.model.factory import load_model, pick_device
from ltm.serve.batching import DONE, Batcher, Request
from ltm.serve.prompt import Prompt, chat_prompt, encode


ANSWER_SHARE = 4  # a chat keeps at least max_tokens, or a quarter of the context, for the answer


class ContextError(ValueError):
    """A conversation that cannot fit the model's context even with its earlier turns dropped."""


class Engine:
    def __init__(self, model_dir: Path, device: str = "auto", batch: int = 16, cuda_graphs: bool = True):
        self.name = Path(model_dir).name
        self.device = pick_device(device)
        model = load_model(model_dir)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = model.to(self.device, dtype).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.context = self.model.config.max_position_embeddings
        self.batcher = Batcher(self.model, batch, end_token_ids(self.tokenizer), cuda_graphs and self.device.type == "cuda")

    def close(self) -> None:
        self.batcher.stop()

    def chat_prompt(self, messages: list[dict]) -> Prompt:
        return chat_prompt(self.tokenizer, messages)

    def fit_chat(self, messages: list[dict], max_tokens: int) -> tuple[Prompt, int]:
        """The conversation through the chat template, its oldest messages dropped until the prompt
        leaves room for the answer (max_tokens, at most a quarter of the context); system messages and the
        last message stay. Returns the prompt and how many messages were dropped; raises
        ContextError when the system messages and the last message alone leave no such room."""
        room = min(max_tokens, self.context // ANSWER_SHARE)
        budget = self.context - 1 - room  # 1: the start token the prompt is given
        droppable = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]

        def without(k: int) -> Prompt:
            gone = set(droppable[:k])
            return self.chat_prompt([m for i, m in enumerate(messages) if i not in gone])

        low, high = 0, len(droppable)  # the fewest oldest messages to drop, found by bisection
        if len(self.encode(last := without(high))) > budget:
            what = "the last message and the system prompt take" if len(messages) - high > 1 else "the last message takes"
            raise ContextError(f"{what} {len(self.encode(last))} tokens; with room for a {room}-token answer the model's context of "
                               f"{self.context} tokens leaves {budget} for the prompt: shorten the message or lower max_tokens")
        while low < high:
            middle = (low + high) // 2
            if len(self.encode(without(middle))) <= budget:
                high = middle
            else:
                low = middle + 1
        return without(low), low

    def encode(self, prompt: str) -> list[int]:
        return encode(self.tokenizer, prompt)

    def stream(self, prompt: str, max_tokens: int, temperature: float, top_p: float, stop: list[str], seed: int | None) -> Iterator[str]:
        """Yield the text of each new token; ends at eos, a stop string, max_tokens or a full context."""
        ids = [self.tokenizer.bos_token_id] + self.encode(prompt)
        ids = ids[-(self.context - 1) :]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else torch.seed() % 2**63)
        request = Request(ids, min(max_tokens, self.context - len(ids)), temperature, top_p, generator)
        self.batcher.submit(request)
        text, pieces = "", TextStream(self.tokenizer)
        try:
            while (token := request.tokens.get()) is not DONE:
                if isinstance(token, Exception):
                    raise token
                piece = pieces.push(token)
                text += piece
                hit = next((s for s in stop if s in text), None)
                if hit is not None:
                    cut = text.index(hit)
                    if cut > len(text) - len(piece):
                        yield piece[: cut - (len(text) - len(piece))]
                    return
                if piece:
                    yield piece
            if rest := pieces.finish():
                yield rest
        finally:
            request.cancelled = True  # a stop string, or the client went away: free the row


class TextStream:
    """Token ids in, new text out, without decoding the whole answer at every token: each token
    decodes a short window that starts a few tokens back (so a tokenizer that drops a leading space
    at the start of a decode, or a character split over several byte tokens, comes out right)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # the window starts here
        self.read = 0  # text of ids[:read] has been given out

    def push(self, token: int) -> str:
        self.ids.append(token)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        now = decode(self.ids[self.prefix :], skip_special_tokens=True)
        if len(now) <= len(before) or now.endswith("\ufffd"):  # nothing new yet, or half a character
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return now[len(before) :]

    def finish(self) -> str:
        """What is still held back at the end (bytes that never made a whole character)."""
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        self.read = len(self.ids)
        return decode(self.ids[self.prefix :], skip_special_tokens=True)[len(before) :]
