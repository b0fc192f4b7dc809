"""The input scaling in ONNX graphs: written before the first Gemm, read back from there.

Export writes a network's scaling (`deltaprop._scaling.Scaling`) as ``Sub(X, input_mean)``
then ``Div(., input_scale)`` in the network's dtype: the arithmetic `Network.predict` does,
so onnxruntime computes the same bits. Import (`read`) maps what reads the graph's input
before its first layer: ``Sub`` and/or ``Div`` (this export, skl2onnx's float64
``StandardScaler``), ``Sub`` then ``Mul``, ``Mul`` then ``Add`` (the fused form), and
ai.onnx.ml's ``Scaler`` (skl2onnx's float32 ``StandardScaler``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._scaling import Scaling

__all__ = ["read", "write"]

# The node sequences read as a scaling, op by op: what each step does to the input.
_PATTERNS = (("Sub", "Div"), ("Sub", "Mul"), ("Mul", "Add"), ("Sub",), ("Div",), ("Mul",))


def write(graph: Any, scaling: Scaling, source: str) -> str:
    """Add ``(source - input_mean) / input_scale`` to a graph being built.

    Parameters
    ----------
    graph : deltaprop.onnx._Graph
        The graph, of the network's dtype.
    scaling : Scaling
        The network's scaling.
    source : str
        The input tensor.

    Returns
    -------
    str
        The scaled tensor, which the first layer reads.
    """
    mean = graph.constant("input_mean", scaling.mean.astype(graph.dtype))
    scale = graph.constant("input_scale", scaling.scale.astype(graph.dtype))
    graph.node("Sub", [source, mean], ["centred_input"])
    graph.node("Div", ["centred_input", scale], ["scaled_input"])
    return "scaled_input"


def read(reader: Any, tensor: str) -> tuple[str, Any]:
    """Map the scaling that reads ``tensor`` (the graph's input), if there is one.

    Parameters
    ----------
    reader : deltaprop._onnx_reader.Reader
        The walk; the nodes mapped are marked in it.
    tensor : str
        The input, after its aliases.

    Returns
    -------
    tensor : str
        What the first layer reads.
    scaling : callable or None
        ``scaling(n_inputs) -> Scaling``, once the first layer says how many inputs there
        are; None: the graph does not scale its input.

    Notes
    -----
    ``scaling`` raises `UnsupportedGraphError` for constants that are not one per input
    column (or one for all), or a scale that is not > 0.
    """
    users = reader.users(tensor)
    if len(users) != 1:
        return tensor, None
    node = reader.graph.node[users[0]]
    if node.op_type == "Scaler" and node.domain == "ai.onnx.ml":
        reader.mapped.add(users[0])
        offset = np.asarray(reader.attribute(users[0], "offset", [0.0]), np.float64)
        factor = np.asarray(reader.attribute(users[0], "scale", [1.0]), np.float64)
        with np.errstate(divide="ignore"):
            return node.output[0], _deferred(reader, users[0], offset, 1.0 / factor)
    steps = _steps(reader, tensor)
    if not steps:
        return tensor, None
    ops = tuple(op for op, _, _ in steps)
    values = {op: value for op, value, _ in steps}
    first = steps[0][2]
    reader.mapped.update(index for _, _, index in steps)
    end = reader.graph.node[steps[-1][2]].output[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        if ops[0] == "Mul":  # y = a x + b: mean -b/a, scale 1/a
            a, b = values["Mul"], values.get("Add", np.zeros(1))
            return end, _deferred(reader, first, -b / a, 1.0 / a)
        mean = values.get("Sub", np.zeros(1))
        scale = 1.0 / values["Mul"] if "Mul" in values else values.get("Div", np.ones(1))
    return end, _deferred(reader, first, mean, scale)


def _steps(reader: Any, tensor: str) -> list[tuple[str, np.ndarray, int]]:
    """Return the longest pattern of `_PATTERNS` reading ``tensor``: (op, constant, node)."""
    for pattern in _PATTERNS:
        steps, current = [], tensor
        for op in pattern:
            users = reader.users(current)
            if len(users) != 1 or reader.graph.node[users[0]].op_type != op:
                break
            constant = _constant_operand(reader, users[0], current, ordered=op in ("Sub", "Div"))
            if constant is None:
                break
            steps.append((op, constant, users[0]))
            current = reader.graph.node[users[0]].output[0]
        if len(steps) == len(pattern):
            return steps
    return []


def _constant_operand(reader: Any, index: int, tensor: str, ordered: bool) -> Any:
    """Return the float64 constant a node applies to ``tensor`` (second in Sub, Div), or None."""
    node = reader.graph.node[index]
    if not reader._default_domain(node) or len(node.input) != 2 or tensor not in node.input:
        return None
    other = node.input[1] if node.input[0] == tensor else node.input[0]
    if (ordered and node.input[0] != tensor) or other not in reader.constants:
        return None
    value = reader.array(other, index, "scaling constant")
    if value.ndim > 2 or (value.ndim == 2 and value.shape[0] != 1):
        raise reader.refuse(index, f"scales by a constant of shape {value.shape}, not per input")
    return value.astype(np.float64).reshape(-1)


def _deferred(reader: Any, index: int, mean: np.ndarray, scale: np.ndarray):
    """Return the scaling once the number of inputs is known: constants broadcast, checked."""

    def scaling(n_inputs: int) -> Scaling:
        try:
            return Scaling(*(np.broadcast_to(v, (n_inputs,)) for v in (mean, scale)))
        except ValueError as error:
            raise reader.refuse(
                index, f"is not a scaling of the {n_inputs} inputs the first layer takes: {error}"
            ) from None

    return scaling
