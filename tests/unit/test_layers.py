"""The layers contract: no import circle, and no module imports a higher layer (docs/architecture.md, "Layers").

Every ``import`` of the two packages is read from the source (module level and inside functions alike), so a lazy
import counts as much as a top-level one. A module's layer is that of the longest prefix listed in ``LAYERS``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("langchain_slm_router", "llama_index_integration")

LAYERS: list[tuple[str, tuple[str, ...]]] = [  # lowest first; a module may import its own layer or lower ones
    ("leaves", ("langchain_slm_router.errors", "langchain_slm_router.statistics", "langchain_slm_router.weights",
                "langchain_slm_router.stops",
                "langchain_slm_router.text", "langchain_slm_router.signals", "langchain_slm_router.lazy",
                "langchain_slm_router.math_parsing", "langchain_slm_router.llm_weights")),
    ("stages", ("langchain_slm_router.messages", "langchain_slm_router.math_engine", "langchain_slm_router.slm",
                "langchain_slm_router.gates", "langchain_slm_router.fallback", "langchain_slm_router.trace",
                "langchain_slm_router.traffic", "langchain_slm_router.savings", "langchain_slm_router.telemetry",
                "langchain_slm_router.cache",
                "langchain_slm_router.embeddings")),  # a model wrapper like slm/: the pre-generation gate reads it
    ("router", ("langchain_slm_router.router", "langchain_slm_router.call")),
    ("integrations", ("langchain_slm_router", "langchain_slm_router.chat_model", "langchain_slm_router.tools",
                      "langchain_slm_router.tool_specs", "llama_index_integration")),
    ("services", ("langchain_slm_router.server", "langchain_slm_router.evaluation", "langchain_slm_router.training",
                  "langchain_slm_router.engine_server", "langchain_slm_router.local_llm")),
    ("commands", ("langchain_slm_router.cli", "langchain_slm_router.demo", "langchain_slm_router.server.cli",
                  "langchain_slm_router.training.cli", "langchain_slm_router.gates.training",
                  "langchain_slm_router.testing")),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in (REPO / pkg).rglob("*.py"):
            parts = f.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in mods else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def _layer(module: str) -> int:
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS and to docs/architecture.md"
    return rank


def test_no_module_imports_a_higher_layer() -> None:
    graph = _imports(_modules())
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) -> {d} ({LAYERS[_layer(d)][0]})"
              for m, deps in sorted(graph.items()) for d in sorted(deps) if _layer(d) > _layer(m)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_circles() -> None:
    graph = _imports(_modules())
    # a package's __init__ importing its own submodules is how a package exports; a submodule importing its
    # package back (or any longer loop) is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_contract_catches_a_violation() -> None:
    assert _layer("langchain_slm_router.gates.learned") < _layer("langchain_slm_router.evaluation.metrics")
    assert _layer("langchain_slm_router.gates.training") > _layer("langchain_slm_router.evaluation.systems")
    assert _layer("langchain_slm_router.slm.adapter") < _layer("langchain_slm_router.training.trainer")
