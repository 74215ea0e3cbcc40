"""Continuous batching: one thread owns the model and decodes every running request together.

Each request gets a row of a StaticKVCache. A new request is prefilled alone into its row; then
one decoding step advances all running rows at once, each at its own position. The step runs on
rows [0, b) for the smallest bucket b (1, 2, 4, 8, 16, ...) that holds every running row, and on
a GPU each bucket's step is a captured CUDA graph: one launch per token instead of hundreds,
which is what makes small models fast to serve. Requests hand back token ids through a queue;
turning them into text (and stop strings) is the caller's work, off this thread. A request that
asks for log-probabilities gets them beside its tokens (the model's own distribution, before
temperature), and with `echo` those of its prompt too, from the prefill's logits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Collection
from dataclasses import dataclass, field

import torch

from ltm.model.cache import StaticKVCache
from ltm.model.modeling import LtmForCausalLM, _pick

DONE = None  # put on a request's queue after its last token


@dataclass
class Logprob:
    logprob: float  # of the token that was chosen (or, for a prompt, that came next)
    top: list[tuple[int, float]]  # the most likely tokens at that position, best first


def logprobs_of(logits: torch.Tensor, chosen: list[int], k: int) -> list[Logprob]:
    """Rows of logits (N, V) and the token chosen at each -> each one's log-probability and its top k."""
    table = torch.log_softmax(logits.float(), -1)
    picked = table.gather(1, torch.tensor(chosen, dtype=torch.long, device=table.device)[:, None])[:, 0].tolist()
    top_values, top_ids = table.topk(k, -1) if k else (table[:, :0], table[:, :0].long())
    return [Logprob(lp, list(zip(ids, values))) for lp, ids, values in zip(picked, top_ids.tolist(), top_values.tolist())]


@dataclass
class Request:
    ids: list[int]  # the prompt, already cut to fit the context
    max_tokens: int
    temperature: float
    top_p: float
    generator: torch.Generator
    tokens: queue.Queue = field(default_factory=queue.Queue)  # token ids, then DONE (or an exception)
    cancelled: bool = False  # set by the caller (stop string hit, client gone): the row is freed
    logprobs: int | None = None  # report each token's logprob and this many top alternatives; None: nothing reported
    echo: bool = False  # with logprobs: also those of the prompt's tokens after the first
    finish_reason: str | None = None  # set before DONE: "stop" (end of text) or "length" (max_tokens, or the context is full)
    token_logprobs: list[Logprob] = field(default_factory=list)  # one per token put on `tokens`, appended before it
    prompt_logprobs: list[Logprob] = field(default_factory=list)  # one per ids[1:], set before the first token
    row: int = -1
    position: int = 0  # tokens of this request in its cache row
    produced: int = 0
    last: int = 0


def buckets(rows: int) -> list[int]:
    sizes, b = [], 1
    while b < rows:
        sizes.append(b)
        b *= 2
    return sizes + [rows]


class Batcher:
    def __init__(self, model: LtmForCausalLM, rows: int, stop_ids: Collection[int], cuda_graphs: bool):
        """`stop_ids`: tokens that end an answer (end of text, end of turn); not given out."""
        self.model, self.stop_ids = model, frozenset(stop_ids)
        self.context = model.config.max_position_embeddings
        device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
        self.cache = StaticKVCache(rows, self.context, device, dtype)
        self.tokens = torch.zeros(rows, 1, dtype=torch.long, device=device)  # the step's inputs, fixed addresses
        self.start = torch.zeros(rows, dtype=torch.long, device=device)
        self.buckets = buckets(rows)
        self.running: dict[int, Request] = {}
        self.waiting: queue.Queue[Request] = queue.Queue()
        self.steps = 0  # decoding steps taken, and the rows they carried (for /metrics)
        self.rows_stepped = 0
        self.stopping = False
        self.graphs = self._capture() if cuda_graphs else {}
        self.thread = threading.Thread(target=self._loop, name="ltm-batcher", daemon=True)
        self.thread.start()

    def submit(self, request: Request) -> None:
        self.waiting.put(request)

    def stop(self) -> None:
        """End the decoding thread after its current step (running requests get DONE), so that the
        process never exits with the thread inside a kernel call."""
        self.stopping = True
        self.waiting.put(None)  # wakes a thread asleep on an empty queue
        self.thread.join(timeout=60)

    @torch.no_grad()
    def _step(self, b: int) -> torch.Tensor:
        return self.model(self.tokens[:b], cache=self.cache.view(slice(0, b), self.start[:b])).logits[:, -1].float()

    @torch.no_grad()
    def _capture(self) -> dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]]:
        """Record each bucket's step once, at start-up, while no row holds a request (the warm-up
        writes into position 0 of idle rows, which a prefill overwrites)."""
        graphs = {}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for b in self.buckets:
                for _ in range(2):  # warm-up: kernels chosen, lazy tables built, outside the graph
                    self._step(b)
        torch.cuda.current_stream().wait_stream(side)
        for b in self.buckets:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._step(b)
            graphs[b] = (graph, out)
        return graphs

    def _loop(self) -> None:
        while not self.stopping:
            if not self.running:
                self._admit(self.waiting.get())  # sleep until there is work
            while len(self.running) < self.cache.rows:
                try:
                    self._admit(self.waiting.get_nowait())
                except queue.Empty:
                    break
            self._drop_cancelled()
            if self.running:
                try:
                    self._decode()
                except Exception as error:  # noqa: BLE001 — every waiting caller gets the error, the server stays up
                    for request in list(self.running.values()):
                        self._finish(request, error=error)
        for request in list(self.running.values()):
            self._finish(request)

    @torch.no_grad()
    def _admit(self, request: Request | None) -> None:
        if request is None or request.cancelled:  # None: stop() asks the loop to look up
            return
        request.row = min(set(range(self.cache.rows)) - set(self.running))
        try:
            prompt = torch.tensor([request.ids], device=self.tokens.device)
            view = self.cache.view(slice(request.row, request.row + 1), torch.zeros(1, dtype=torch.long, device=prompt.device))
            every = self.model(prompt, cache=view).logits[0].float()
            if request.echo:
                request.prompt_logprobs = logprobs_of(every[:-1], request.ids[1:], request.logprobs or 0)
        except Exception as error:  # noqa: BLE001 — reported to this request alone
            request.tokens.put(error)
            return
        request.position = len(request.ids)
        self.running[request.row] = request
        if request.max_tokens <= 0:  # only the prompt's logprobs were asked for
            self._finish(request, "length")
            return
        logits = every[-1:]
        token = int(self._sample([request], logits)[0])
        if request.logprobs is not None:
            request.token_logprobs += logprobs_of(logits, [token], request.logprobs)
        self._emit(request, token)

    def _decode(self) -> None:
        b = next(size for size in self.buckets if size > max(self.running))
        # One copy each for the step's inputs; idle rows decode a dummy token at position 0.
        tokens, start = [0] * self.cache.rows, [0] * self.cache.rows
        for row, request in self.running.items():
            tokens[row], start[row] = request.last, request.position
        self.tokens.copy_(torch.tensor(tokens)[:, None])
        self.start.copy_(torch.tensor(start))
        if b in self.graphs:
            graph, out = self.graphs[b]
            graph.replay()
            logits = out
        else:
            logits = self._step(b)
        self.steps += 1
        self.rows_stepped += len(self.running)
        rows = sorted(self.running)
        picked = self._sample([self.running[r] for r in rows], logits[rows]).tolist()  # one sync per step
        wanted = [i for i, row in enumerate(rows) if self.running[row].logprobs is not None]
        if wanted:
            k = max(self.running[rows[i]].logprobs for i in wanted)
            for i, found in zip(wanted, logprobs_of(logits[[rows[i] for i in wanted]], [picked[i] for i in wanted], k)):
                request = self.running[rows[i]]
                request.token_logprobs.append(Logprob(found.logprob, found.top[: request.logprobs]))
        for row, token in zip(rows, picked):
            self.running[row].position += 1
            self._emit(self.running[row], token)

    @staticmethod
    def _sample(requests: list[Request], logits: torch.Tensor) -> torch.Tensor:
        """Greedy rows in one argmax; each sampled row with its own generator, so a seeded request
        gives the same text whatever else shares its batch."""
        picked = logits.argmax(-1)
        for i, request in enumerate(requests):
            if request.temperature > 0:
                picked[i] = pick_top_p(logits[i : i + 1], request.temperature, request.top_p, request.generator)
        return picked

    def _emit(self, request: Request, token: int) -> None:
        request.last = token
        if token in self.stop_ids:
            if request.logprobs is not None:
                request.token_logprobs.pop()  # an end token is not part of the answer
            self._finish(request, "stop")
            return
        request.tokens.put(token)
        request.produced += 1
        if request.produced >= request.max_tokens or request.position + 1 >= self.context:  # prompt + output fill the context
            self._finish(request, "length")

    def _drop_cancelled(self) -> None:
        for request in [r for r in self.running.values() if r.cancelled]:
            self._finish(request)

    def _finish(self, request: Request, reason: str | None = None, error: Exception | None = None) -> None:
        self.running.pop(request.row, None)
        request.finish_reason = reason
        request.tokens.put(error if error is not None else DONE)


def pick_top_p(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """One row of logits (1, V) -> a token: nucleus sampling, the smallest set whose mass reaches top_p."""
    if top_p >= 1:
        return _pick(logits, temperature, None, generator)[0]
    probs = torch.softmax(logits.float()[0] / temperature, -1)
    ordered, index = probs.sort(descending=True)
    keep = ordered.cumsum(0) - ordered < top_p
    ordered = torch.where(keep, ordered, torch.zeros_like(ordered))
    return index[torch.multinomial(ordered / ordered.sum(), 1, generator=generator)][0]
