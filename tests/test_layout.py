"""The package's structure: its modules import each other without a circle, and import
optional dependencies only where they are used."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import deltaprop

PACKAGE = Path(deltaprop.__file__).parent
# Imported inside functions on purpose: optional extras, or costly at import time.
OPTIONAL = {"matplotlib", "sklearn", "tqdm", "mpi4py", "onnx", "onnxruntime", "scipy", "torch"}
OPTIONAL |= {"skl2onnx"}  # the estimators' converters, registered on request
# Standard modules that alone would cost `import deltaprop` more than the package itself,
# copy, which only copying an optimizer (saving, pickling) needs, and importlib.metadata,
# which only finding oneDNN's library for bfloat16 needs.
COSTLY = {"hashlib", "json", "tempfile", "zipfile", "copy", "importlib"}
# The package's own modules that the functions needing them import (``from . import onnx``):
# rarely used, and together they would add milliseconds to `import deltaprop`.
ON_FIRST_USE = {"interop", "nielsen", "onnx", "_distributed", "_gradient_check"}
# What `import deltaprop` must not load beyond numpy: the above, the submodules it loads on
# first use, importlib.resources, pathlib and gzip, which only deltaprop.datasets needs,
# signal and traceback, which only deltaprop._distributed needs, dataclasses, which only
# deltaprop.interop uses (the classes loaded at import are written out instead), and
# threading (the locks come from _thread).
NOT_AT_IMPORT = OPTIONAL | COSTLY | {"importlib.resources", "pathlib", "gzip"}
NOT_AT_IMPORT |= {"signal", "traceback", "dataclasses", "threading"}
NOT_AT_IMPORT |= {
    f"deltaprop.{name}"
    for name in ("datasets", "reference", "sklearn", "plot", "cli", *ON_FIRST_USE)
}


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def _package_imports(tree: ast.AST) -> set[str]:
    """Names of the package's own modules that ``tree`` imports (relative imports)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(alias.name for alias in node.names)
    return names


def test_the_import_graph_has_no_circle():
    modules = _modules()
    graph = {name: _package_imports(tree) & set(modules) for name, tree in modules.items()}
    graph["__init__"] = set()  # the package re-exports; no module imports it
    visiting, done = [], set()

    def visit(name: str) -> None:
        assert name not in visiting, f"import circle: {' -> '.join([*visiting, name])}"
        if name in done:
            return
        visiting.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_imports_inside_functions_are_optional_dependencies_only():
    """Optional dependencies, costly standard modules and the package's ON_FIRST_USE modules
    only."""
    for name, tree in _modules().items():
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and node.level == 1 and name == "_loader":
                    continue  # the compiled module is loaded under a set environment
                if isinstance(node, ast.ImportFrom) and node.level == 1:
                    imported = {node.module} if node.module else {a.name for a in node.names}
                    assert imported <= ON_FIRST_USE, f"{name}.{function.name} imports {imported}"
                    continue
                if isinstance(node, ast.ImportFrom):
                    roots = {node.module.split(".")[0]}
                elif isinstance(node, ast.Import):
                    roots = {alias.name.split(".")[0] for alias in node.names}
                else:
                    continue
                assert roots <= OPTIONAL | COSTLY, f"{name}.{function.name} imports {roots}"


def _modules_loaded_by_import_deltaprop() -> set[str]:
    """Modules ``import deltaprop`` loads after numpy, per ``python -X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import numpy, deltaprop"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    after_numpy = done.stderr.split("| numpy\n", 1)[1]
    return {line.rsplit("|", 1)[1].strip() for line in after_numpy.splitlines()}


def test_import_loads_nothing_optional_or_costly():
    """`import deltaprop` stays within about 10 ms of `import numpy`: a time is too noisy to
    assert, so the modules that would break it are named instead."""
    loaded = _modules_loaded_by_import_deltaprop()
    assert {"deltaprop", "deltaprop._core", "deltaprop.network"} <= loaded
    assert not loaded & NOT_AT_IMPORT
    assert not {name for name in loaded if name.split(".")[0] in OPTIONAL}


def test_lazy_submodules_load_on_first_use():
    assert {"datasets", "reference"} <= set(dir(deltaprop))
    assert deltaprop.datasets.load_digits()[0].shape == (1797, 64)
    assert callable(deltaprop.reference.gradients)
    with pytest.raises(AttributeError, match="no attribute 'nowhere'"):
        deltaprop.nowhere  # noqa: B018


def test_to_onnx_spells_out_the_opset_of_deltaprop_onnx():
    """Network.to_onnx's default is written as a number, so that deltaprop.onnx loads on
    first use only: it must stay that module's OPSET."""
    default = inspect.signature(deltaprop.Network.to_onnx).parameters["opset"].default
    assert default == deltaprop.onnx.OPSET


def test_no_module_imports_a_private_name_of_another():
    """Private names (a leading underscore) stay in their module; private modules offer
    public names."""
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                private = [a.name for a in node.names if a.name.startswith("_")]
                private = [p for p in private if p not in ("_core", "__version__")]
                assert not private, f"{name} imports {private} from .{node.module}"


def test_the_sources_pass_ruff():
    """Lint (numpydoc docstrings included: ruff's D rules) and formatting, as configured
    in pyproject.toml."""
    root = Path(__file__).resolve().parents[1]
    for command in (["check", "python", "tests", "bench"], ["format", "--check", "python"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


# Size targets of the package's code, in code lines (docstrings, comments and blank lines
# aside): a function, a class, a module; the reference implementation is one long story.
MAX_LINES = {"function": 80, "class": 400, "module": 600}
LONG_BY_DESIGN = {"reference"}


def _docstring_lines(tree: ast.AST) -> set[int]:
    """Line numbers of the docstrings of ``tree``'s module, classes and functions."""
    lines = set()
    for node in ast.walk(tree):
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        if isinstance(node, kinds) and ast.get_docstring(node, clean=False) is not None:
            first = node.body[0]
            lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def _code_lines(source: list[str], first: int, last: int, docstrings: set[int]) -> int:
    """Lines first..last (from 1) that hold code: not blank, a comment or a docstring."""
    return sum(
        1
        for number in range(first, last + 1)
        if number not in docstrings
        and source[number - 1].strip()
        and not source[number - 1].strip().startswith("#")
    )


def _sizes() -> list[tuple[str, str, int]]:
    """(kind, name, code lines) of every module, class and function of the package."""
    sizes = []
    for path in sorted(PACKAGE.glob("*.py")):
        source = path.read_text().splitlines()
        tree = ast.parse("\n".join(source))
        docstrings = _docstring_lines(tree)
        sizes.append(("module", path.stem, _code_lines(source, 1, len(source), docstrings)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = _code_lines(source, first, node.end_lineno, docstrings)
                sizes.append((kind, f"{path.stem}.{node.name}", lines))
    return sizes


def test_functions_classes_and_modules_stay_within_their_size_targets():
    too_long = [
        f"{kind} {name}: {lines} code lines, over {MAX_LINES[kind]}"
        for kind, name, lines in _sizes()
        if lines > MAX_LINES[kind] and name.split(".")[0] not in LONG_BY_DESIGN
    ]
    assert not too_long, "\n".join(too_long)


def test_the_size_count_skips_docstrings_and_comments():
    source = ["def f():", '    """Say', '    what."""', "    # why", "", "    return 1"]
    tree = ast.parse("\n".join(source))
    assert _code_lines(source, 1, len(source), _docstring_lines(tree)) == 2


def test_the_development_guide_lists_every_source_file():
    """docs/guide/development.md's Layout names each file of the core and the package."""
    root = Path(__file__).resolve().parent.parent
    layout = (root / "docs" / "guide" / "development.md").read_text(encoding="utf-8")
    block = layout.split("```")[1]
    listed = set(re.findall(r"^\s*(\S+\.(?:py|pyi|hpp|cpp))\s", block, re.M))
    package = root / "python" / "deltaprop"
    files = [f"cpp/{path.name}" for path in (root / "cpp").iterdir()]
    files += [path.name for pattern in ("*.py", "*.pyi") for path in package.glob(pattern)]
    assert sorted(name for name in files if name not in listed) == []
