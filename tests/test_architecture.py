"""The package's shape: no import cycles, the two halves apart, short functions."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segcli"
MAX_FUNCTION_LINES = 80
MAX_LOOP_LINES = 40  # the epoch loop (train.engine.fit) reads on one screen


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    """segcli module -> the segcli modules it imports, at the top or inside functions."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("segcli")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("segcli"):
                for a in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                    sub = f"{node.module}.{a.name}"
                    edges.add(sub if _is_module(sub) else node.module)
        graph[_module_name(path)] = edges - {_module_name(path)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return []


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "segcli.train.engine" in graph
    assert _cycle(graph) == []


def test_training_and_inference_meet_only_at_the_checkpoint() -> None:
    graph = import_graph()
    for m, edges in graph.items():
        for half, other in (("segcli.train", "segcli.infer"), ("segcli.infer", "segcli.train")):
            if m == half or m.startswith(half + "."):
                crossing = [e for e in edges if e == other or e.startswith(other + ".")]
                assert not crossing, f"{m} imports {crossing}"
    # and both read the checkpoint through the typed contract
    assert "segcli.checkpoint" in graph["segcli.train.state"] and "segcli.checkpoint" in graph["segcli.infer.predictor"]


def test_the_server_runs_inference_only() -> None:
    graph = import_graph()
    served = [m for m in graph if m == "segcli.serve" or m.startswith("segcli.serve.")]
    assert "segcli.serve.batcher" in served
    for m in served:
        crossing = [e for e in graph[m] if e == "segcli.train" or e.startswith("segcli.train.")]
        assert not crossing, f"{m} imports {crossing}"


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_longer_than_a_screen() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for fn in _functions(ast.parse(path.read_text())):
            lines = fn.end_lineno - fn.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(PACKAGE.parent)}:{fn.lineno} {fn.name} ({lines} lines)")
    assert not long, long
    engine = ast.parse((PACKAGE / "train" / "engine.py").read_text())
    fit = next(f for f in _functions(engine) if f.name == "fit")
    assert fit.end_lineno - fit.lineno + 1 <= MAX_LOOP_LINES
