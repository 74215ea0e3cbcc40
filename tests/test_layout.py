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
        if SRC / "markup" in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip and MARKER.search(node.value):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    assert not offenders, "marker tokens belong in ltm.markup:\n" + "\n".join(offenders)


def imported(path: Path) -> set[str]:
    """The ltm modules a source file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ltm"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("ltm"))
    return names


def test_evaluation_and_serving_never_reach_into_training_or_the_build():
    """eval/ and serve/ read a model through ltm.model and a dataset through its reader, so they run
    where the training code and the build's dependencies are not needed."""
    allowed_dataset = {"ltm.dataset.reader", "ltm.dataset.tokenizer"}
    offenders = []
    for package in ("eval", "serve"):
        for path in sorted((SRC / package).rglob("*.py")):
            for name in imported(path):
                if name.startswith("ltm.train") or (name.startswith("ltm.dataset") and name not in allowed_dataset):
                    offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_model_package_depends_on_nothing_later_in_the_pipeline():
    later = ("ltm.dataset", "ltm.train", "ltm.eval", "ltm.serve", "ltm.experiment", "ltm.stages", "ltm.cli")
    offenders = [f"{path.relative_to(SRC)} imports {name}" for path in sorted((SRC / "model").rglob("*.py"))
                 for name in imported(path) if name.startswith(later)]
    assert not offenders, "\n".join(offenders)
