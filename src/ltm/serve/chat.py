"""`ltm chat MODEL_DIR`: a conversation in the terminal, each answer streamed as it is generated.

Lines typed are user turns; `/reset` forgets the conversation, `/exit` (or end of input) leaves.
The whole conversation goes through the model's chat template at every turn; when it outgrows the
context its oldest messages are left out, with a note, as the server does (Engine.fit_chat)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from ltm.serve.engine import ContextError, Engine


def chat(model_dir: Path, max_tokens: int, temperature: float, top_p: float, system: str | None,
         read: TextIO | None = None, write: TextIO | None = None) -> int:
    read, write = read or sys.stdin, write or sys.stdout
    engine = Engine(model_dir, batch=1)
    opening = [{"role": "system", "content": system}] if system else []
    messages = list(opening)
    interactive = read.isatty()
    write.write(f"ltm chat: {engine.name} on {engine.device} — /reset forgets, /exit leaves\n")
    turns = 0
    try:
        while True:
            if interactive:
                write.write("you> ")
                write.flush()
            line = read.readline()
            if not line or line.strip() == "/exit":
                break
            line = line.strip()
            if not line:
                continue
            if line == "/reset":
                messages = list(opening)
                write.write("(conversation forgotten)\n")
                continue
            try:
                prompt, dropped = engine.fit_chat(messages + [{"role": "user", "content": line}], max_tokens)
            except ContextError as exc:
                write.write(f"(not sent: {exc})\n")
                continue
            messages.append({"role": "user", "content": line})
            if dropped:
                write.write(f"({dropped} earlier message{'s' if dropped > 1 else ''} left out: the conversation outgrew the context)\n")
            write.write("ltm> ")
            answer = []
            for piece in engine.stream(prompt, max_tokens, temperature, top_p, [], None):
                answer.append(piece)
                write.write(piece)
                write.flush()
            write.write("\n")
            messages.append({"role": "assistant", "content": "".join(answer)})
            turns += 1
    finally:
        engine.close()
    write.write(f"bye ({turns} turns)\n")
    return 0
