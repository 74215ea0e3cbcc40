"""The generation engine behind the server: one loaded model and tokenizer, and a Batcher that
decodes every concurrent request together (serve/batching.py). This side turns token ids into
text as they arrive, so a response can stream, applies stop strings, and says why a generation
ended and how many tokens it took."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ltm.dataset.tokenizer import byte_decoder
from ltm.markup import CHAT_TOKENS
from ltm.model.export import end_token_ids
from ltm.model.factory import load_model, pick_device
from ltm.serve.batching import DONE, Batcher, Logprob, Request
from ltm.serve.prompt import Prompt, chat_prompt, encode


ANSWER_SHARE = 4  # a chat keeps at least max_tokens, or a quarter of the context, for the answer


class ContextError(ValueError):
    """A conversation that cannot fit the model's context even with its earlier turns dropped."""


class PromptError(ValueError):
    """A prompt the model cannot take as it is (too long to echo whole, token ids outside the vocabulary)."""


@dataclass
class Piece:
    text: str  # the text this token made visible: "" while a character is still incomplete
    token: int | None  # None for bytes held back to the end that never made a whole character
    logprob: Logprob | None  # when the request asked for logprobs


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
        # The roles the chat template can frame: those whose marker is a token of this vocabulary.
        vocab = self.tokenizer.get_vocab()
        self.roles = tuple(role for role, marker in CHAT_TOKENS.items() if marker in vocab) or tuple(CHAT_TOKENS)
        self._token_strings: list[tuple[str, bytes]] | None = None

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

    def token_string(self, token: int) -> tuple[str, bytes]:
        """A token as logprobs show it: its text, and its bytes (a byte-level token may hold part of
        a character; its text is then `bytes:\\xNN...`, as OpenAI writes such tokens)."""
        if self._token_strings is None:
            byte_of, special = byte_decoder(), set(self.tokenizer.all_special_ids)
            table = []
            for index, token_text in enumerate(self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))):
                if index in special or any(ch not in byte_of for ch in token_text):
                    raw = (token_text if index in special else self.tokenizer.decode([index])).encode("utf-8")
                else:
                    raw = bytes(byte_of[ch] for ch in token_text)
                try:
                    table.append((raw.decode("utf-8"), raw))
                except UnicodeDecodeError:
                    table.append(("bytes:" + "".join(f"\\x{b:02x}" for b in raw), raw))
            self._token_strings = table
        return self._token_strings[token]

    def generate(self, prompt: str | list[int], max_tokens: int, temperature: float, top_p: float, stop: list[str], seed: int | None,
                 logprobs: int | None = None, echo: bool = False) -> Generation:
        """Start a generation now (it joins the batch at once) and return it; iterate it for its pieces.
        A prompt is text, or token ids taken as they are. Without `echo` a prompt too long for the
        context is cut from the left; with it (the prompt's logprobs are asked for) it is refused."""
        ids = list(prompt) if isinstance(prompt, list) else self.encode(prompt)
        if any(not 0 <= token < len(self.tokenizer) for token in ids):
            raise PromptError(f"the prompt holds token ids outside this model's vocabulary of {len(self.tokenizer)}")
        bos = [] if self.tokenizer.bos_token_id is None else [self.tokenizer.bos_token_id]
        if echo and len(bos) + len(ids) + (max_tokens > 0) > self.context:
            raise PromptError(f"the prompt's {len(ids)} tokens do not fit the context of {self.context} tokens with the "
                              f"{min(max_tokens, 1)} to generate, and echo needs the whole prompt")
        request_ids = bos + ids if echo else (bos + ids)[-(self.context - 1) :]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed % 2**64 if seed is not None else torch.seed() % 2**63)
        request = Request(request_ids, min(max_tokens, self.context - len(request_ids)), temperature, top_p, generator,
                          logprobs=logprobs, echo=echo)
        self.batcher.submit(request)
        return Generation(self.tokenizer, request, stop, ids)

    def stream(self, prompt: str, max_tokens: int, temperature: float, top_p: float, stop: list[str], seed: int | None) -> Iterator[str]:
        """Yield the text of each new token; ends at eos, a stop string, max_tokens or a full context."""
        for piece in self.generate(prompt, max_tokens, temperature, top_p, stop, seed):
            if piece.text:
                yield piece.text


class Generation:
    """One request on its way through the batcher. Iterating gives a Piece per token; after the end,
    `finish_reason` is "stop" (end of text or a stop string) or "length" (max_tokens or a full
    context) and `completion_tokens` counts the tokens generated. `cancel()` (also called when the
    iteration ends or is abandoned) gives the request's row back at the batcher's next step."""

    def __init__(self, tokenizer, request: Request, stop: list[str], prompt_ids: list[int]):
        self.tokenizer, self.request, self.stop = tokenizer, request, stop
        self.prompt_ids = prompt_ids  # as the client sent them, without the bos token
        self.finish_reason: str | None = None
        self.completion_tokens = 0

    def cancel(self) -> None:
        self.request.cancelled = True

    def __iter__(self) -> Iterator[Piece]:
        request, text, pieces = self.request, "", TextStream(self.tokenizer)
        try:
            while (token := request.tokens.get()) is not DONE:
                if isinstance(token, Exception):
                    raise token
                logprob = request.token_logprobs[self.completion_tokens] if request.logprobs is not None else None
                self.completion_tokens += 1
                piece = pieces.push(token)
                text += piece
                hit = next((s for s in self.stop if s in text), None)
                if hit is not None:
                    self.finish_reason = "stop"
                    yield Piece(piece[: max(0, text.index(hit) - (len(text) - len(piece)))], token, logprob)
                    return
                yield Piece(piece, token, logprob)
            self.finish_reason = request.finish_reason
            if rest := pieces.finish():
                yield Piece(rest, None, None)
        finally:
            self.cancel()  # a stop string, or the client went away: free the row

    def prompt_pieces(self) -> list[Piece]:
        """The prompt token by token, with its logprobs when the request echoed them (after the
        generation began: the prefill writes them). The first token has none without a bos token."""
        scored = self.request.prompt_logprobs[-len(self.prompt_ids):] if self.prompt_ids else []
        logprobs = [None] * (len(self.prompt_ids) - len(scored)) + list(scored)
        pieces = TextStream(self.tokenizer)
        return [Piece(pieces.push(token), token, logprob) for token, logprob in zip(self.prompt_ids, logprobs)]


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
