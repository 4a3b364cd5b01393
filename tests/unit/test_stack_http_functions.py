"""scripts/stack.py prints the URL of every HTTP function functions/main.py declares, and of nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

from scripts import stack

ROOT = Path(__file__).resolve().parents[2]


def declared_http_functions() -> set[str]:
    tree = ast.parse((ROOT / "functions" / "main.py").read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("on_request" in ast.unparse(decorator) for decorator in node.decorator_list)
    }


def test_the_stack_lists_every_http_function() -> None:
    declared = declared_http_functions()
    assert "stk_push" in declared  # the parse found the declarations
    assert set(stack.HTTP_FUNCTIONS) == declared
    base = stack.CONFIG.functions_base_url
    assert {name: url for name, url in stack.urls().items() if name in declared} == {
        name: f"{base}/{name}" for name in declared
    }
