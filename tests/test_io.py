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


def test_written_files_and_folders_get_ordinary_modes_not_owner_only(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    with atomic_write(tmp_path / "documents.jsonl") as handle:
        handle.write("{}\n")
    with atomic_dir(tmp_path / "dataset") as folder:
        (folder / "manifest.json").write_text("{}")
    assert (tmp_path / "documents.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "dataset").stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_json_problem_reads_as_one_sentence():
    import json

    from ltm.io import json_problem

    try:
        json.loads('{"a": "b')
    except json.JSONDecodeError as exc:
        assert json_problem(exc) == "unterminated string starting at line 1, column 7"
    try:
        json.loads("[1,\n x]")
    except json.JSONDecodeError as exc:
        assert json_problem(exc) == "expecting value at line 2, column 2"
