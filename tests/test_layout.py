"""The package's layout: imports run from the command line down to the core, never back up, with no
cycle, and the core never reaches for files, processes or terminals.

Every import counts, including those inside functions (a deferred import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nstvideo"

# lowest first: a module may import its own rank's package and the ranks below it
RANKS = {"config": 0, "errors": 0, "runtime": 0, "images": 0, "resume": 0,
         "network": 1, "optim": 2, "still": 3, "video": 4, "scale": 5, "records": 6, "cli": 7,
         "__main__": 8}
# tensors in, tensors out: no files, processes or terminals
CORE = ("network.features", "network.losses", "network.objective", "network.color",
        "optim.engine", "optim.lbfgs", "still.schedule", "still.tiling", "still.blockwise",
        "still.stylize", "video.flow", "video.frames", "video.lookahead",
        "network.transformer", "optim.training", "still.painting", "scale.plan", "scale.joins")
OUTSIDE_THE_CORE = {"subprocess", "tqdm", "imageio_ffmpeg", "shutil", "tempfile"}
FACADE = ""  # nstvideo/__init__.py: the public API, which imports from below and is imported by nobody


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(modules of the package this one imports, top-level names of outside modules it imports)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "nstvideo":
                    inside.add(alias.name.partition(".")[2])
                else:
                    outside.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if (node.module or "").split(".")[0] != "nstvideo":
                    outside.add((node.module or "").split(".")[0])
                    continue
                base = node.module.partition(".")[2].split(".") if "." in node.module else []
            else:
                base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            for alias in node.names:
                candidate = ".".join(base + [alias.name])
                inside.add(candidate if candidate in known else ".".join(base))
    inside.discard(name)
    return inside, outside


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known)[0] for name, path in known.items()}


def rank(name: str) -> int:
    return RANKS[name.split(".")[0]]


def test_every_module_has_a_rank():
    assert all(name == FACADE or name.split(".")[0] in RANKS for name in modules())


def test_imports_run_down_the_pipeline():
    upward = []
    for name, targets in graph().items():
        if name == FACADE:
            continue
        for target in targets:
            if target == FACADE:  # the version string: only the command line reports it
                if rank(name) != RANKS["cli"]:
                    upward.append(f"{name} -> nstvideo")
                continue
            same_package = target.split(".")[0] == name.split(".")[0]
            if rank(target) > rank(name) or (rank(target) == rank(name) and "." in target
                                            and not same_package):
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_no_import_cycle():
    edges = graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("name", CORE)
def test_the_core_touches_no_files_processes_or_terminals(name):
    known = modules()
    inside, outside = imports(name, known[name], known)
    assert outside & OUTSIDE_THE_CORE == set()
    assert inside & {"video.io", "video.source", "video.workdir", "video.sink"} == set()


def test_public_api():
    from nstvideo import StylizeConfig, build_network, stylize_image

    assert callable(stylize_image) and callable(build_network) and StylizeConfig().schedule.size > 0
