"""Atomic writes (src/ltm/io.py): what a writer killed with SIGKILL leaves behind is removed by the next write."""

import os
import signal
import subprocess
import sys

from ltm.io import atomic_dir, atomic_write

# Writes a file and a folder atomically and is killed inside both writes.
VICTIM = """
import sys, time
from pathlib import Path
from ltm.io import atomic_dir, atomic_write
folder = Path(sys.argv[1])
with atomic_write(folder / "records.jsonl") as handle, atomic_dir(folder / "step_0000080") as tmp:
    handle.write("half a line")
    (tmp / "model.safetensors").write_bytes(b"half a model")
    print("inside", flush=True)
    time.sleep(600)
"""


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_temporaries_left_by_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    (tmp_path / "step_0000040").mkdir()
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert victim.stdout.readline().strip() == "inside"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    stale = hidden(tmp_path)
    assert len(stale) == 2 and all(f".ltm-{victim.pid}-" in name for name in stale)
    # A live writer's temporary (this process's id) is not touched; neither is another hidden file.
    live = tmp_path / f".metrics.jsonl.ltm-{os.getpid()}-abc.tmp"
    live.write_text("being written")
    (tmp_path / ".keep").write_text("")
    with atomic_write(tmp_path / "other.json") as handle:
        handle.write("{}")
    assert hidden(tmp_path) == sorted([".keep", live.name])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["other.json", "step_0000040"]


def test_a_replaced_folder_leaves_nothing_beside_it(tmp_path):
    for text in ("first", "second"):
        with atomic_dir(tmp_path / "checkpoint") as tmp:
            (tmp / "weights").write_text(text)
    assert (tmp_path / "checkpoint" / "weights").read_text() == "second" and hidden(tmp_path) == []
