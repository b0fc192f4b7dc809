"""The JSON model files of Nielsen's network2.py, read and written.

network2.py's ``Network.save`` writes one JSON object: ``sizes`` (units per layer, input
first), ``weights`` (W^l as nested lists of shape (n_l, n_{l-1})), ``biases`` (b^l as column
vectors, (n_l, 1)) and ``cost`` (``"QuadraticCost"`` or ``"CrossEntropyCost"``, the name of
its cost class). Every layer is sigmoid, the output too. `deltaprop.load` reads such a file
as a float64 network without an optimizer (it tells the two formats apart by their first
byte) and ``Network.save(path,
format="nielsen")`` writes one for a network of that kind. Nothing in a file is executed; its
size is bounded before it is parsed, and every field is checked before a network is built.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import numpy as np

from . import _files
from ._container import ModelFormatError

__all__ = ["COSTS", "MAX_BYTES", "network_fields", "read", "write"]

# network2.py's cost classes and deltaprop's names of them.
COSTS = {"QuadraticCost": "quadratic", "CrossEntropyCost": "cross_entropy"}
# About 12 million parameters written as network2.py writes them (17-20 characters each);
# parsing takes about 5 times the file's size. Raise it with read(..., max_bytes=...).
MAX_BYTES = 256 * 2**20
_FIELDS = {"sizes", "weights", "biases", "cost"}


def read(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """Read a network2.py model file: its fields, checked.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file.
    max_bytes : int, default=MAX_BYTES
        Larger files are refused before they are read.

    Returns
    -------
    dict
        ``sizes`` (list of int), ``weights`` and ``biases`` (lists of float64 arrays, W^l of
        shape (n_l, n_{l-1}) and b^l of shape (n_l,)) and ``cost`` (deltaprop's name).

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        The file cannot be opened.
    ModelFormatError
        The file is not a valid network2.py model file, or is over ``max_bytes``.
    """
    name = os.fsdecode(os.fspath(path))
    with _files.open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_bytes:
            raise ModelFormatError(
                f"{name}: {size} bytes, over max_bytes={max_bytes}; for a larger file, "
                "fields = deltaprop.nielsen.read(path, max_bytes=...), then "
                "Network.from_params(fields['weights'], fields['biases'], "
                "activation='sigmoid', output='sigmoid', cost=fields['cost'])"
            )
        text = file.read(max_bytes + 1)
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: a hostile nesting
        raise ModelFormatError(f"{name}: not a network2.py JSON file ({error})") from None
    try:
        return _checked(fields)
    except ModelFormatError as error:
        raise ModelFormatError(f"{name}: {error}") from None


def network_fields(net) -> dict[str, Any]:
    """Return what network2.py's ``save`` would write for ``net``.

    Parameters
    ----------
    net : Network
        A network network2.py can hold: sigmoid hidden and output layers, the quadratic or
        the cross-entropy cost.

    Returns
    -------
    dict
        The JSON object's fields.

    Raises
    ------
    ValueError
        The network is not one network2.py can hold (naming what differs).
    """
    misfits = [
        f"{what} is {value!r}, not 'sigmoid'"
        for what, value in (("activation", net.activation), ("output", net.output))
        if value != "sigmoid" and (what == "output" or len(net.architecture.sizes) > 2)
    ]
    if net.cost_name not in COSTS.values():
        misfits.append(f"cost is {net.cost_name!r}, not 'quadratic' or 'cross_entropy'")
    if misfits:
        raise ValueError(
            "format='nielsen': network2.py has sigmoid layers and the quadratic or "
            f"cross-entropy cost; this network's {'; '.join(misfits)}"
        )
    weights, biases = net.layer_copies()
    cost = next(name for name, ours in COSTS.items() if ours == net.cost_name)
    return {
        "sizes": list(net.architecture.sizes),
        "weights": [W.astype(np.float64).tolist() for W in weights],
        "biases": [b.astype(np.float64).reshape(-1, 1).tolist() for b in biases],
        "cost": cost,
    }


def write(path: str | os.PathLike, net) -> None:
    """Write ``net`` as network2.py's ``save`` does, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The destination file (``.json`` by convention).
    net : Network
        See `network_fields`.

    Raises
    ------
    ValueError
        The network is not one network2.py can hold.
    OSError
        The file cannot be written.
    """
    text = json.dumps(network_fields(net)).encode("ascii")
    _files.write_atomically(path, lambda file: file.write(text))


def _checked(fields: Any) -> dict[str, Any]:
    """Return the fields of a parsed file, checked and converted (see `read`)."""
    if not isinstance(fields, dict) or fields.keys() != _FIELDS:
        keys = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
        raise ModelFormatError(f"expected an object of {sorted(_FIELDS)}, got {keys}")
    sizes = fields["sizes"]
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(type(n) is int and n >= 1 for n in sizes)
    ):
        raise ModelFormatError(f"sizes: expected a list of 2 or more positive ints, got {sizes!r}")
    if fields["cost"] not in COSTS:
        raise ModelFormatError(f"cost: expected one of {sorted(COSTS)}, got {fields['cost']!r}")
    shapes = list(zip(sizes[1:], sizes[:-1]))
    weights = _layers(fields["weights"], "weights", shapes)
    biases = _layers(fields["biases"], "biases", [(n, 1) for n, _ in shapes])
    return {
        "sizes": sizes,
        "weights": weights,
        "biases": [b.reshape(-1) for b in biases],
        "cost": COSTS[fields["cost"]],
    }


def _layers(value: Any, name: str, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Return nested lists of the given shapes as float64 arrays of finite numbers."""
    if not isinstance(value, list) or len(value) != len(shapes):
        raise ModelFormatError(f"{name}: expected a list of {len(shapes)} layers")
    layers = []
    for l, (layer, shape) in enumerate(zip(value, shapes), start=1):
        # The shape first, from the lists' lengths: no array is built for a wrong one.
        if not isinstance(layer, list) or len(layer) != shape[0]:
            raise ModelFormatError(f"{name}[{l}]: expected {shape[0]} rows, as sizes says")
        if not all(isinstance(row, list) and len(row) == shape[1] for row in layer):
            raise ModelFormatError(f"{name}[{l}]: expected rows of {shape[1]} numbers")
        if not all(_finite_number(x) for row in layer for x in row):
            raise ModelFormatError(f"{name}[{l}]: expected finite numbers only")
        layers.append(np.array(layer, dtype=np.float64))
    return layers


def _finite_number(x: Any) -> bool:
    """Whether a parsed JSON value is an int or float of a finite float64 value."""
    if type(x) is float:
        return math.isfinite(x)
    return type(x) is int and abs(x) <= sys.float_info.max  # exact: no conversion
