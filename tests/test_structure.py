"""The library's import graph has no cycles — counting imports inside functions too, since a lazy
import still ties two modules into one concept that neither can be understood without."""
from __future__ import annotations

import ast
import pathlib
import re

PKG = pathlib.Path(__file__).resolve().parents[1] / "s5jax"


def _module_name(path: pathlib.Path, pkg: pathlib.Path) -> str:
    parts = path.relative_to(pkg.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(pkg: pathlib.Path = PKG) -> dict[str, set[str]]:
    """module -> the s5jax modules it imports (anywhere in its body)."""
    files = {_module_name(p, pkg): p for p in pkg.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # `from pkg import name` imports the submodule pkg.name when there is one
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in files else origin
                           for a in node.names]
            for t in targets:
                while t and t not in files:        # `import s5jax.models.m2d.x` -> nearest module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = import_graph()
    assert "s5jax.official.m2d" in graph and "s5jax.models.m2d" in graph["s5jax.official.m2d"]
    assert find_cycles(graph) == []


def test_cycle_finder_sees_lazy_imports(tmp_path):
    """The checker itself: a cycle made only of a function-level import is found."""
    pkg = tmp_path / "s5jax"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "rules.py").write_text("def f():\n    from .models.net import g\n")
    (pkg / "models" / "net.py").write_text("from ..rules import f\n")
    (pkg / "cli.py").write_text("import s5jax.demo\n")
    (pkg / "demo.py").write_text("def run():\n    from s5jax import cli\n")
    assert find_cycles(import_graph(pkg)) == [["s5jax.cli", "s5jax.demo"],
                                             ["s5jax.models.net", "s5jax.rules"]]


def test_roles():
    """Models import nothing of the converter (its tables import them); the rule engine, checkpoint and
    wrapper never import models, the official reader or the programs; the demo does not drive the CLI."""
    graph = import_graph()
    for m in ("s5jax.official.rules", "s5jax.checkpoint", "s5jax.wrapper"):
        bad = {t for t in graph[m] if t.startswith(("s5jax.models", "s5jax.official.convert", "s5jax.official.m2d",
                                                      "s5jax.official.resunet", "s5jax.cli", "s5jax.infer"))}
        assert not bad, (m, bad)
    for m in ("s5jax.models.m2d", "s5jax.models.resunet"):
        assert not {t for t in graph[m] if t.startswith("s5jax.official")}, m
    assert "s5jax.cli" not in graph["s5jax.demo"]


README = PKG.parent / "README.md"


def layout_tree(readme: str) -> tuple[set[str], set[str]]:
    """The fenced tree of README's "## Layout" section -> (module paths under s5jax/, other folders).

    A line `  folder/  a.py b.py   # comment` names s5jax/folder/a.py, ...; a line of `.py` names only
    names modules of s5jax/ itself; an unindented line names folders of the repository. A package's
    `__init__.py` counts as named with its folder."""
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    modules, folders = set(), set()
    for line in block.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words == ["s5jax/"]:
            continue
        if not line.startswith(" "):
            folders |= set(words)
            continue
        sub = words[0] if words[0].endswith("/") else ""
        if sub:
            folders.add("s5jax/" + sub)
            modules.add(f"s5jax/{sub}__init__.py")
        modules |= {f"s5jax/{sub}{w}" for w in words if w.endswith(".py")}
        assert all(w.endswith((".py", "/")) for w in words), line
    return modules, folders


def test_readme_layout_names_every_module_and_only_real_ones():
    modules, folders = layout_tree(README.read_text())
    root = PKG.parent
    real = {p.relative_to(root).as_posix() for p in PKG.rglob("*.py")}
    assert real - modules == set(), "modules missing from README's Layout"
    assert modules - real == set(), "README's Layout names modules that do not exist"
    assert [f for f in folders if not (root / f).is_dir()] == []


def test_layout_reader_reads_each_kind_of_line():
    """The checker itself, on a made-up README: one module per kind of line."""
    text = ("x\n## Layout\n\ntext\n```\ns5jax/\n  a.py b.py    # top level\n  sub/  c.py   # a folder\n"
            "tests/ bench/\n```\n## Next\n```\n  other.py\n```\n")
    modules, folders = layout_tree(text)
    assert modules == {"s5jax/a.py", "s5jax/b.py", "s5jax/sub/__init__.py", "s5jax/sub/c.py"}
    assert folders == {"s5jax/sub/", "tests/", "bench/"}


def test_shipped_training_configs_start_from_what_readme_converts():
    """Every official-checkpoint start in train/configs/*.json (paths relative to the config file, as
    the training config reader resolves them) is a folder README's `s5jax convert` commands write."""
    import json
    import os

    root = PKG.parent
    converted = set(re.findall(r"^s5jax convert \S+ (\S+)$", README.read_text(), re.M))
    assert {"ckpt/tagger4ch", "ckpt/separator"} <= converted
    starts = {}
    for cfg in sorted((root / "train" / "configs").glob("*.json")):
        path = json.loads(cfg.read_text()).get("init_path")
        if path:
            starts[cfg.name] = os.path.relpath(os.path.normpath(cfg.parent / path), root)
    assert starts and all(p in converted for p in starts.values()), starts
