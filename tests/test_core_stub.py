"""The type stub python/deltaprop/_core.pyi matches the compiled module deltaprop._core.

Every public class, method, property and module function of the stub exists in the module and
vice versa (a class's ``__init__`` included), and every callable takes the same parameters, in
the same order and with the same ones defaulted, as pybind11 reports on the first line of its
``__doc__`` (each overload's line, for an overloaded function).
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from deltaprop import _core

STUB = Path(__file__).resolve().parents[1] / "python" / "deltaprop" / "_core.pyi"

# A parameter list: names in order and, for each, whether it has a default.
Parameters = tuple[tuple[str, bool], ...]


# ------------------------------------------------------------------------------------ the stub
def _stub_parameters(function: ast.FunctionDef) -> Parameters:
    args = function.args
    positional = args.posonlyargs + args.args
    defaulted = len(args.defaults)
    names = [(a.arg, i >= len(positional) - defaulted) for i, a in enumerate(positional)]
    names += [(a.arg, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg is not None:  # **kwargs
        names.append((args.kwarg.arg, False))
    return tuple(names)


def _is_property(function: ast.FunctionDef) -> bool:
    return any(
        (isinstance(d, ast.Name) and d.id == "property")
        or (isinstance(d, ast.Attribute) and d.attr == "setter")
        for d in function.decorator_list
    )


def _stub_members(classes: dict[str, ast.ClassDef], name: str) -> dict[str, Parameters | None]:
    """Members of stub class `name` with those of its stub bases: parameters of each
    method, None for a property."""
    members: dict[str, Parameters | None] = {}
    for base in classes[name].bases:
        if isinstance(base, ast.Name) and base.id in classes:
            members |= _stub_members(classes, base.id)
    for node in classes[name].body:
        if isinstance(node, ast.FunctionDef):
            members[node.name] = None if _is_property(node) else _stub_parameters(node)
    return members


def _public(name: str) -> bool:
    return not name.startswith("_") or name == "__init__"


def stub_api(source: str) -> dict[str, dict[str, Parameters | None] | Parameters]:
    """The public API a stub declares: for each class its members (see _stub_members), for
    each module function its parameters."""
    tree = ast.parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    api: dict[str, dict[str, Parameters | None] | Parameters] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and _public(node.name):
            api[node.name] = {
                k: v for k, v in _stub_members(classes, node.name).items() if _public(k)
            }
        elif isinstance(node, ast.FunctionDef) and _public(node.name):
            api[node.name] = _stub_parameters(node)
        elif isinstance(node, ast.AnnAssign) and _public(node.target.id):
            api[node.target.id] = None  # a constant
    return api


# ---------------------------------------------------------------------------- the compiled module
def _split_top_level(text: str) -> list[str]:
    """`text` split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _signature_parameters(line: str, name: str) -> Parameters:
    """Parameters of a pybind11 signature line ``name(a: type, b: type = 1) -> type``."""
    match = re.match(rf"{re.escape(name)}\((.*)\) -> ", line)
    assert match, f"{name}: no pybind11 signature in {line!r}"
    parameters = []
    for part in _split_top_level(match.group(1)):
        if part in ("*", "/"):
            continue
        parameters.append((re.match(r"\*{0,2}(\w+)", part).group(1), "=" in part.split(":")[-1]))
    return tuple(parameters)


def compiled_parameters(function: object, name: str) -> list[Parameters]:
    """The parameters of each overload of a pybind11 function or method."""
    lines = inspect.getdoc(function).splitlines()
    if lines[0] == f"{name}(*args, **kwargs)" and lines[1] == "Overloaded function.":
        overloads = [re.sub(r"^\d+\. ", "", line) for line in lines if re.match(r"\d+\. ", line)]
        return [_signature_parameters(line, name) for line in overloads]
    return [_signature_parameters(lines[0], name)]


def _compiled_members(cls: type) -> dict[str, list[Parameters] | None]:
    members: dict[str, list[Parameters] | None] = {}
    for name in dir(cls):
        if not _public(name) or (name == "__init__" and "__init__" not in vars(cls)):
            continue  # a class without a constructor inherits pybind11's, which raises
        attribute = inspect.getattr_static(cls, name)
        is_property = isinstance(attribute, property)
        members[name] = None if is_property else compiled_parameters(getattr(cls, name), name)
    return members


def compiled_api(module) -> dict[str, dict[str, list[Parameters] | None] | list[Parameters]]:
    api: dict[str, dict[str, list[Parameters] | None] | list[Parameters]] = {}
    for name in dir(module):
        if not _public(name) or name == "__init__":
            continue
        value = getattr(module, name)
        if isinstance(value, type):
            api[name] = _compiled_members(value)
        elif isinstance(value, int):
            api[name] = None  # a constant
        else:
            api[name] = compiled_parameters(value, name)
    return api


# ------------------------------------------------------------------------------------ comparison
def _compare_parameters(where: str, stub: Parameters | None, compiled) -> list[str]:
    if stub is None or compiled is None:
        if (stub is None) != (compiled is None):
            kinds = ("a property" if stub is None else "a method",
                     "a property" if compiled is None else "a method")  # fmt: skip
            return [f"{where}: {kinds[0]} in the stub, {kinds[1]} in the module"]
        return []
    return [
        f"{where}: stub takes {list(stub)}, the module {list(overload)}"
        for overload in compiled
        if overload != stub
    ]


def _compare_names(where: str, stub: set[str], compiled: set[str]) -> list[str]:
    problems = [f"{where}{name}: in the stub, not in the module" for name in stub - compiled]
    problems += [f"{where}{name}: in the module, not in the stub" for name in compiled - stub]
    return sorted(problems)


def mismatches(stub: dict, compiled: dict) -> list[str]:
    """Every difference between a stub's API and the module's, as readable lines."""
    problems = _compare_names("", set(stub), set(compiled))
    for name in sorted(set(stub) & set(compiled)):
        s, c = stub[name], compiled[name]
        if isinstance(s, dict) != isinstance(c, dict):
            problems.append(f"{name}: a class on one side only")
        elif isinstance(s, dict):
            problems += _compare_names(f"{name}.", set(s), set(c))
            for member in sorted(set(s) & set(c)):
                problems += _compare_parameters(f"{name}.{member}", s[member], c[member])
        else:
            problems += _compare_parameters(name, s, c)
    return problems


# ----------------------------------------------------------------------------------------- tests
def test_stub_matches_the_compiled_module():
    assert mismatches(stub_api(STUB.read_text()), compiled_api(_core)) == []


def test_stub_declares_what_the_package_uses():
    """The comparison sees the whole API: classes, methods, properties, module functions."""
    stub = stub_api(STUB.read_text())
    assert {"Mlp32", "Mlp64", "UpdateRule", "set_num_threads", "all_finite"} <= set(stub)
    train = [name for name, _ in stub["Mlp32"]["train"]]
    assert train[:4] == ["self", "params", "state", "step"]
    assert stub["Mlp64"]["sizes"] is None  # a property
    assert len(compiled_parameters(_core.all_finite, "all_finite")) == 2  # float and double


EXTRA_METHOD = "    def extra(self) -> None: ...\n"
EXTRA_FUNCTION = "def extra() -> None: ...\n"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s + EXTRA_FUNCTION, "extra: in the stub, not in the module"),
        (lambda s: s.replace("def get_num_threads() -> int: ...\n", ""),
         "get_num_threads: in the module, not in the stub"),
        (lambda s: s.replace("class UpdateRule:\n", "class UpdateRule:\n" + EXTRA_METHOD),
         "UpdateRule.extra: in the stub, not in the module"),
        (lambda s: s.replace("    @property\n    def n_params(self) -> int: ...\n", ""),
         "Mlp32.n_params: in the module, not in the stub"),
        (lambda s: s.replace("settings: TrainSettings,", "options: TrainSettings,"),
         "Mlp32.train: stub takes"),
        (lambda s: s.replace("        lr: float,\n", "        lr: float = 0.1,\n"),
         "UpdateRule.__init__: stub takes"),
        (lambda s: s.replace("def set_num_threads(n: int)", "def set_num_threads(count: int)"),
         "set_num_threads: stub takes"),
    ],
    ids=["function-added", "function-removed", "method-added", "property-removed",
         "parameter-renamed", "default-added", "function-parameter-renamed"],
)  # fmt: skip
def test_comparison_catches_a_drifted_stub(edit, expected):
    source = STUB.read_text()
    edited = edit(source)
    assert edited != source, "the edit did not apply: update this test with the stub"
    problems = mismatches(stub_api(edited), compiled_api(_core))
    assert any(problem.startswith(expected) for problem in problems), problems
