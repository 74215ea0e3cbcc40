"""The layout's promises, checked on the source: one home for the scene markup, and dependencies
that point down the pipeline."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ltm"
MARKER = re.compile(r"<\|[\w:/.-]+\|>")  # a concrete marker token string such as <|scene|> or <|loop:new|>


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (they may show a marker as an example)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def test_no_module_outside_the_markup_home_spells_a_marker_token():
    offenders = []
    for path in modules():
        if path == SRC / "markup.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip and MARKER.search(node.value):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    assert not offenders, "marker tokens belong in ltm.markup:\n" + "\n".join(offenders)
