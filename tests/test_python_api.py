"""docs/python-api.md's first example runs as written (in a temporary folder), on the sample corpus."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_documented_stage_by_stage_example_runs(tmp_path, monkeypatch, capsys):
    page = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    assert 'Path("runs/by-hand")' in code
    monkeypatch.chdir(ROOT)  # the example names examples/quickstart.yaml from the project's root
    exec(compile(code.replace('Path("runs/by-hand")', f"Path({str(tmp_path / 'by-hand')!r})"), "docs/python-api.md", "exec"), {})
    assert (tmp_path / "by-hand" / "train" / "checkpoint" / "config.json").exists()
    assert capsys.readouterr().out.strip()  # the sample was printed
