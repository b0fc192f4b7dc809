"""Reading an ONNX graph as a chain of layers: the walk `deltaprop.onnx.read` makes.

`Reader` follows the graph from its input along the fully connected layers and their
activations; `_Outputs` checks that what the graph declares as its outputs is what that
chain computes (see `deltaprop.onnx` for what is recognised).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _onnx_scaling
from ._architecture import Architecture
from ._container import ModelFormatError
from ._files import open_inside
from .interop import Layer, Layers

_ELEMENT_DTYPES = {1: np.dtype("<f4"), 11: np.dtype("<f8")}  # TensorProto.FLOAT, DOUBLE


class UnsupportedGraphError(ModelFormatError):
    """An ONNX graph that is well formed but is not a chain of fully connected layers.

    The message names the first node that cannot be mapped and says why.
    """


# Operators that map onto deltaprop's activations.
_ACTIVATION_OPS = {
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "Softmax": "softmax",
}
# Operators skl2onnx (and `classifier_model`) put after a classifier's network: set aside.
_SET_ASIDE = {
    "ArgMax",
    "ArrayFeatureExtractor",
    "ZipMap",
    "Binarizer",
    "Cast",
    "Reshape",
    "Identity",
    "Sub",
    "Concat",
    "Gather",
    "Greater",
    "Flatten",
}


# What a tensor after the chain is (`Reader.derived`): the network's output (perhaps in
# another form), a label derived from it, or 1 minus a one-unit output.
_NETWORK, _LABEL, _COMPLEMENT = "network", "label", "complement"
_SMALL_CONSTANT = 8  # elements: the most a shape or a scalar after the chain holds


class Reader:
    """Walks a graph from its input along the chain of layers."""

    def __init__(
        self, onnx: Any, model: Any, name: str, directory: str | None, budget: int
    ) -> None:
        self.onnx, self.model, self.name = onnx, model, name
        self.directory = directory  # of the model's file, where external data may lie
        self.budget = budget  # the bytes of external data that max_bytes leaves
        self.graph = model.graph
        self.constants: dict[str, Any] = {t.name: t for t in self.graph.initializer}
        self.consumers: dict[str, list[int]] = {}
        self.mapped: set[int] = set()  # the nodes the network accounts for
        self.dtype: np.dtype | None = None  # of the input, or of the Cast that follows it
        for index, node in enumerate(self.graph.node):
            if not node.output or not all(node.output):
                raise self.malformed(f"{self.where(index)} has an output without a name")
            if node.op_type == "Constant" and self._default_domain(node):
                self.constants[self._constant_output(index)] = node.attribute[0].t
                self.mapped.add(index)
            for tensor in node.input:
                self.consumers.setdefault(tensor, []).append(index)

    # -------------------------------------------------------------- errors and tensors
    def where(self, index: int) -> str:
        node = self.graph.node[index]
        label = repr(node.name) if node.name else f"#{index}"
        return f"node {label} ({node.op_type})"

    def refuse(self, index: int, why: str) -> UnsupportedGraphError:
        return UnsupportedGraphError(f"{self.name}: {self.where(index)} {why}")

    def malformed(self, why: str) -> ModelFormatError:
        return ModelFormatError(f"{self.name}: {why}")

    def _constant_output(self, index: int) -> str:
        node = self.graph.node[index]
        attributes = list(node.attribute)
        if len(node.output) != 1 or len(attributes) != 1 or attributes[0].name != "value":
            raise self.refuse(index, "is a Constant other than one tensor 'value'")
        return node.output[0]

    def array(self, name: str, index: int, what: str) -> np.ndarray:
        """Return a constant tensor's value, its size checked against its data first."""
        tensor = self.constants.get(name)
        if tensor is None:
            raise self.refuse(index, f"takes its {what} from {name!r}, which is not a constant")
        dtype = _ELEMENT_DTYPES.get(tensor.data_type)
        if dtype is None:
            raise self.refuse(index, f"has a {what} of ONNX type {tensor.data_type}, not a float")
        if tensor.HasField("segment") or any(d < 0 for d in tensor.dims) or len(tensor.dims) > 8:
            raise self.malformed(f"tensor {name!r}: invalid dimensions {list(tensor.dims)}")
        count = math.prod(tensor.dims)
        stored = tensor.float_data if dtype.itemsize == 4 else tensor.double_data
        external = tensor.data_location == self.onnx.TensorProto.EXTERNAL
        if external != bool(tensor.external_data):
            raise self.malformed(f"tensor {name!r}: external data without its location")
        raw = self.external(tensor, name, count * dtype.itemsize) if external else tensor.raw_data
        if raw:
            if len(stored) or len(raw) != count * dtype.itemsize:
                raise self.malformed(
                    f"tensor {name!r} declares {list(tensor.dims)} {dtype.name} values, its "
                    f"data holds {len(raw)} bytes"
                )
            values = np.frombuffer(raw, dtype=dtype)
        else:
            if len(stored) != count:
                raise self.malformed(
                    f"tensor {name!r} declares {list(tensor.dims)} values, holds {len(stored)}"
                )
            # One element at a time: np.array would first make a list of Python floats
            # (about 32 bytes for each value of 4 or 8).
            values = np.fromiter(stored, dtype=dtype, count=count)
        if not np.isfinite(values).all():
            raise self.malformed(f"tensor {name!r} holds NaN or infinity")
        return values.reshape(tuple(tensor.dims))

    def external(self, tensor: Any, name: str, nbytes: int) -> bytes:
        """Read a tensor's external data: ``nbytes`` from a file beside the model's."""
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        if self.directory is None:
            raise self.malformed(f"tensor {name!r} has external data: read the model's file")
        try:
            offset, length = int(entries.get("offset", 0)), int(entries.get("length", nbytes))
        except ValueError:
            raise self.malformed(
                f"tensor {name!r}: external data offset or length is not a number"
            ) from None
        if offset < 0:
            raise self.malformed(f"tensor {name!r}: external data offset {offset} is negative")
        if length != nbytes:
            raise self.malformed(
                f"tensor {name!r} declares {list(tensor.dims)} values, "
                f"{nbytes} bytes; its external data claims {length}"
            )
        if nbytes > self.budget:
            raise self.malformed(
                f"tensor {name!r}: {nbytes} bytes of external data, over what max_bytes "
                "leaves; pass a larger max_bytes to read the model"
            )
        self.budget -= nbytes
        try:
            file = open_inside(self.directory, location)
        except ValueError as error:
            raise self.malformed(
                f"tensor {name!r}: external data {location!r} is not a file in the model's "
                f"directory ({error})"
            ) from None
        with file:
            size = os.fstat(file.fileno()).st_size
            if offset + nbytes > size:
                raise self.malformed(
                    f"tensor {name!r}: {location!r} has {size} bytes, not the "
                    f"{nbytes} from offset {offset} it should hold"
                )
            file.seek(offset)
            return file.read(nbytes)

    def attribute(self, index: int, name: str, default: Any) -> Any:
        for attribute in self.graph.node[index].attribute:
            if attribute.name == name:
                return self.onnx.helper.get_attribute_value(attribute)
        return default

    def finite_attribute(self, index: int, name: str, default: float) -> float:
        """Return a float attribute (a float32 in the file: 1e39 reads as infinity), finite."""
        value = float(self.attribute(index, name, default))
        if not math.isfinite(value):
            raise self.malformed(f"{self.where(index)} has {name}={value}, not a finite number")
        return value

    def scaled(self, array: np.ndarray, factor: float, name: str, index: int) -> np.ndarray:
        """Return ``factor * array`` in float64, rounded once to the array's dtype; finite.

        ``factor`` is the attribute ``name`` (alpha for the weights, beta for the bias).
        """
        if factor == 1.0:
            return array
        with np.errstate(over="ignore"):
            result = (np.float64(factor) * array.astype(np.float64)).astype(array.dtype)
        if not np.isfinite(result).all():
            raise self.malformed(
                f"{self.where(index)}: {name}={factor} times its "
                f"{'weights' if name == 'alpha' else 'bias'} overflows {array.dtype.name}"
            )
        return result

    def check_units(self, W: np.ndarray, index: int) -> None:
        """Refuse weights W (n_out, n_in) of a layer without units or inputs."""
        if 0 in W.shape:
            raise self.malformed(
                f"{self.where(index)} has weights for {W.shape[0]} units of {W.shape[1]} "
                "inputs; a layer has at least one of each"
            )

    def users(self, tensor: str) -> list[int]:
        return [i for i in self.consumers.get(tensor, []) if i not in self.mapped]

    # -------------------------------------------------------------- the walk
    def layers(self) -> Layers:
        tensor = self.skip_aliases(self.input(), at_input=True)
        tensor, scaling = _onnx_scaling.read(self, tensor)
        tensor = self.skip_aliases(tensor)
        layers: list[Layer] = []
        while True:
            step = self.linear(tensor)
            if step is None:
                break
            tensor, W, b, where = step
            if layers and W.shape[1] != layers[-1].weights.shape[0]:
                raise self.refuse(
                    where,
                    f"takes {W.shape[1]} inputs where the previous layer "
                    f"has {layers[-1].weights.shape[0]} outputs",
                )
            tensor, layer = self.activation(self.skip_aliases(tensor), W, b, where)
            tensor = self.skip_aliases(tensor)
            layers.append(layer)
        if not layers:
            raise UnsupportedGraphError(f"{self.name}: no fully connected layer reads the input")
        self.set_aside(tensor)
        _Outputs(self).check(tensor, layers[-1].weights.shape[0])
        chained = self.finish(layers)
        if scaling is not None:
            chained.input_scaling = scaling(layers[0].weights.shape[1])
        return chained

    def input(self) -> str:
        inputs = [i for i in self.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise UnsupportedGraphError(
                f"{self.name}: the graph has {len(inputs)} inputs; a network has one"
            )
        value = inputs[0]
        if not value.type.HasField("tensor_type"):
            raise UnsupportedGraphError(f"{self.name}: input {value.name!r} is not a tensor")
        element = value.type.tensor_type.elem_type
        self.dtype = _ELEMENT_DTYPES.get(element)
        shape = value.type.tensor_type.shape
        if value.type.tensor_type.HasField("shape") and len(shape.dim) != 2:
            raise UnsupportedGraphError(
                f"{self.name}: input {value.name!r} has {len(shape.dim)} dimensions, not 2 "
                "(samples, features)"
            )
        return value.name

    def skip_aliases(self, tensor: str, at_input: bool = False) -> str:
        """Follow the nodes that pass ``tensor`` on unchanged; return the last tensor.

        Those are Identity, and Cast to the network's dtype (at the input: to float32 or
        float64, which sets it).
        """
        while True:
            users = self.users(tensor)
            if len(users) != 1 or not self._default_domain(self.graph.node[users[0]]):
                return tensor
            node = self.graph.node[users[0]]
            if node.op_type == "Cast":
                target = _ELEMENT_DTYPES.get(self.attribute(users[0], "to", 0))
                if target is None or not (at_input or target == self.dtype):
                    return tensor
                self.dtype = target
            elif node.op_type != "Identity":
                return tensor
            self.mapped.add(users[0])
            tensor = node.output[0]

    @staticmethod
    def _default_domain(node: Any) -> bool:
        return node.domain in ("", "ai.onnx")

    def linear(self, tensor: str) -> tuple[str, np.ndarray, np.ndarray, int] | None:
        """Map the layer reading ``tensor``: (its z, W (n_out, n_in), b (n_out,), its node)."""
        candidates = [
            i
            for i in self.users(tensor)
            if self.graph.node[i].op_type in ("Gemm", "MatMul", "Transpose")
        ]
        if not candidates:
            return None
        index = candidates[0]
        node = self.graph.node[index]
        if not self._default_domain(node):
            raise self.refuse(index, f"is in domain {node.domain!r}, not ONNX's own")
        others = [i for i in self.users(tensor) if i != index]
        if others:
            raise self.refuse(
                others[0],
                f"reads {tensor!r}, which a layer ({self.where(index)})"
                " also reads: the graph is not a chain",
            )
        if node.op_type == "Transpose":
            return self.transposed_gemm(index)
        if node.op_type == "MatMul":
            return self.matmul(index, tensor)
        return self.gemm(index, tensor, transposed=False)

    def gemm(self, index: int, tensor: str, transposed: bool):
        node = self.graph.node[index]
        self.mapped.add(index)
        if len(node.input) < 2 or node.input[0] != tensor:
            raise self.refuse(
                index, "has the data as its second input: the layer's output would be transposed"
            )
        if bool(self.attribute(index, "transA", 0)) != transposed:
            raise self.refuse(
                index,
                "has transA=1 without a Transpose of the data before it"
                if not transposed
                else "reads a transposed input without transA=1",
            )
        alpha, beta = (self.finite_attribute(index, name, 1.0) for name in ("alpha", "beta"))
        B = self.array(node.input[1], index, "weights (B)")
        if B.ndim != 2:
            raise self.refuse(index, f"has weights (B) of shape {B.shape}, not a matrix")
        W = B if self.attribute(index, "transB", 0) else B.T
        self.check_units(W, index)
        C = (
            self.array(node.input[2], index, "bias (C)")
            if len(node.input) > 2 and node.input[2]
            else np.zeros((), W.dtype)
        )
        b = self.bias(C, W.shape[0], index, "bias (C)")
        W, b = self.scaled(W, alpha, "alpha", index), self.scaled(b, beta, "beta", index)
        return node.output[0], W, b, index

    def transposed_gemm(self, index: int):
        node = self.graph.node[index]
        perm = list(self.attribute(index, "perm", [1, 0]))
        users = self.users(node.output[0])
        if perm != [1, 0] or len(users) != 1 or self.graph.node[users[0]].op_type != "Gemm":
            raise self.refuse(index, "transposes the data other than into a Gemm with transA=1")
        self.mapped.add(index)
        return self.gemm(users[0], node.output[0], transposed=True)

    def matmul(self, index: int, tensor: str):
        node = self.graph.node[index]
        self.mapped.add(index)
        if len(node.input) != 2:
            raise self.refuse(index, f"has {len(node.input)} inputs, not 2")
        if node.input[0] != tensor:
            raise self.refuse(
                index, "has the data as its second input: the layer's output would be transposed"
            )
        B = self.array(node.input[1], index, "weights")
        if B.ndim != 2:
            raise self.refuse(index, f"has weights of shape {B.shape}, not a matrix")
        W, z = B.T, node.output[0]
        self.check_units(W, index)
        b = np.zeros(W.shape[0], W.dtype)
        users = self.users(z)
        if len(users) == 1 and self.graph.node[users[0]].op_type == "Add":
            add = users[0]
            operands = list(self.graph.node[add].input)
            if len(operands) != 2 or z not in operands:
                raise self.refuse(add, "is not a sum of the product and a bias")
            bias = operands[1] if operands[0] == z else operands[0]
            b = self.bias(self.array(bias, add, "bias"), W.shape[0], add, "bias")
            self.mapped.add(add)
            z = self.graph.node[add].output[0]
        return z, W, b, index

    def bias(self, C: np.ndarray, n_out: int, index: int, what: str) -> np.ndarray:
        """Return bias C as (n_out,); C is (), (1,), (n_out,), (1, 1) or (1, n_out)."""
        if C.ndim > 2 or (C.ndim == 2 and C.shape[0] != 1) or C.size not in (1, n_out):
            raise self.refuse(
                index, f"has a {what} of shape {C.shape}, not one for each of the {n_out} units"
            )
        return np.broadcast_to(C.reshape(-1), (n_out,)).copy()

    def activation(self, z: str, W: np.ndarray, b: np.ndarray, linear: int) -> tuple[str, Layer]:
        """Map the activation reading ``z`` (none: identity); return its output, the layer."""
        users = self.users(z)
        ops = sorted(self.graph.node[i].op_type for i in users)
        if ops == ["Greater", "Mul", "Where"]:
            return self.where_leaky_relu(z, users, W, b)
        if ops == ["Neg"]:
            return self.reciprocal_sigmoid(users[0], W, b)
        if len(users) != 1 or ops[0] not in _ACTIVATION_OPS:
            return z, Layer(W, b, "identity", self.where(linear))
        index = users[0]
        node = self.graph.node[index]
        if not self._default_domain(node):
            return z, Layer(W, b, "identity", self.where(linear))
        self.mapped.add(index)
        name = _ACTIVATION_OPS[node.op_type]
        layer = Layer(W, b, name, self.where(index))
        if name == "leaky_relu":
            layer.leaky_slope = self.finite_attribute(index, "alpha", 0.01)
        if name == "softmax" and self.attribute(index, "axis", 1) not in (1, -1):
            raise self.refuse(index, "is not over the units (axis 1 or -1)")
        return node.output[0], layer

    def where_leaky_relu(self, z: str, users: list[int], W, b) -> tuple[str, Layer]:
        """``Where(z > 0, z, slope * z)``: leaky_relu with a slope of any precision."""
        nodes = {self.graph.node[i].op_type: i for i in users}
        greater, mul, where = nodes["Greater"], nodes["Mul"], nodes["Where"]
        g, m, w = (self.graph.node[i] for i in (greater, mul, where))
        zero = self.array(_other(g.input, z), greater, "threshold") if g.input[:1] == [z] else None
        slope = self.array(_other(m.input, z), mul, "slope")
        if zero is None or zero.size != 1 or zero.reshape(-1)[0] != 0:
            raise self.refuse(greater, "is not z > 0")
        if slope.size != 1 or list(w.input) != [g.output[0], z, m.output[0]]:
            raise self.refuse(where, "is not Where(z > 0, z, slope * z)")
        self.mapped.update(users)
        layer = Layer(W, b, "leaky_relu", self.where(where), float(slope.reshape(-1)[0]))
        return w.output[0], layer

    def reciprocal_sigmoid(self, neg: int, W, b) -> tuple[str, Layer]:
        """``1 / (1 + exp(-z))``: sigmoid to full float64 precision."""
        chain = [neg]
        for op in ("Exp", "Add", "Reciprocal"):
            users = self.users(self.graph.node[chain[-1]].output[0])
            if len(users) != 1 or self.graph.node[users[0]].op_type != op:
                raise self.refuse(chain[-1], "starts no 1 / (1 + exp(-z)) (a sigmoid)")
            chain.append(users[0])
        add = self.graph.node[chain[2]]
        one = self.array(_other(add.input, self.graph.node[chain[1]].output[0]), chain[2], "one")
        if one.size != 1 or one.reshape(-1)[0] != 1:
            raise self.refuse(chain[2], "does not add 1 in 1 / (1 + exp(-z)) (a sigmoid)")
        self.mapped.update(chain)
        return self.graph.node[chain[-1]].output[0], Layer(W, b, "sigmoid", self.where(neg))

    # -------------------------------------------------------------- after the chain
    def set_aside(self, output: str) -> None:
        """Set aside what reads the network's output; refuse any other node left.

        That is skl2onnx's label and probability branch.
        """
        available = {output} | set(self.constants)
        for index, node in enumerate(self.graph.node):
            if index in self.mapped:
                continue
            if node.op_type not in _SET_ASIDE:
                raise self.refuse(index, _unmappable(node.op_type))
            outside = [t for t in node.input if t and t not in available]
            if outside:
                raise self.refuse(
                    index,
                    f"reads {outside[0]!r}, which is not the network's "
                    "output: it cannot be set aside as a label branch",
                )
            available.update(node.output)

    def finish(self, layers: list[Layer]) -> Layers:
        dtypes = {layer.weights.dtype for layer in layers}
        dtype = self.dtype if self.dtype is not None else layers[0].weights.dtype
        if dtypes != {dtype}:
            raise UnsupportedGraphError(
                f"{self.name}: the layers compute in {sorted(d.name for d in dtypes)}, the "
                f"input is {dtype.name}; one dtype for the whole network"
            )
        metadata = {p.key: p.value for p in self.model.metadata_props}
        try:
            chained = Layers.chain(layers, dtype)
        except ValueError as error:
            raise UnsupportedGraphError(f"{self.name}: {error}") from None
        if self.model.producer_name == "deltaprop":
            _restore_deltaprop_fields(chained, metadata)
        return chained


class _Outputs:
    """What a graph declares as its outputs, against the chain a `Reader` walked."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def check(self, end: str, n_out: int) -> None:
        """Refuse a graph that does not output what the network computes.

        Every declared output must be the chain's end ``end`` (as is, or in one of
        skl2onnx's forms of it) or a label derived from it, and one must be the former: a
        graph outputting a hidden layer, a pre-activation or a piece of the output computes
        something else than the network read from it.
        """
        outputs = [value.name for value in self.reader.graph.output]
        if not outputs:
            raise UnsupportedGraphError(f"{self.reader.name}: the graph declares no output")
        kinds = self.derived(end, n_out)
        for output in outputs:
            if output not in kinds or kinds[output] == _COMPLEMENT:
                raise UnsupportedGraphError(
                    f"{self.reader.name}: output {output!r} is {self.producer(output)}, not the "
                    f"network's output {end!r} nor a label derived from it"
                )
        if _NETWORK not in {kinds[output] for output in outputs}:
            raise UnsupportedGraphError(
                f"{self.reader.name}: the graph outputs labels only "
                f"({', '.join(map(repr, outputs))}), not the network's output {end!r}"
            )

    def derived(self, end: str, n_out: int) -> dict[str, str]:
        """Say what each tensor after the chain is: the network's output, a label, or 1 - it.

        The network's output passes through Identity, a Cast to a float type, Flatten over
        axis 1, ZipMap, a Reshape to (N, n_out), and skl2onnx's binary form
        ``Concat(1 - p, p)``; a label is what ArgMax over the units, Binarizer or Greater
        make of it, and what follows from labels alone (class lookups, casts, reshapes).
        """
        kinds = {end: _NETWORK}
        complement_of: dict[str, str] = {}  # the tensor 1 - p: p
        for index, node in enumerate(self.reader.graph.node):
            if index in self.reader.mapped:
                continue
            data = [t for t in node.input if t and t not in self.reader.constants]
            sources = {kinds.get(t) for t in data}
            if not data or None in sources:
                continue
            if sources == {_LABEL}:
                kinds.update(dict.fromkeys(node.output, _LABEL))
            elif sources == {_NETWORK} and len(node.output) == 1:
                kind = self.derived_from_network(index, data, n_out)
                if kind is not None:
                    kinds[node.output[0]] = kind
                    if kind == _COMPLEMENT:
                        complement_of[node.output[0]] = data[0]
            elif self.is_binary_probabilities(index, data, complement_of, kinds):
                kinds[node.output[0]] = _NETWORK
        return kinds

    def derived_from_network(self, index: int, data: list[str], n_out: int) -> str | None:
        """Say what a node reading only the network's output (``data``) makes of it, if known."""
        node = self.reader.graph.node[index]
        op, axis = node.op_type, self.reader.attribute(index, "axis", None)
        if len(data) != 1:
            return None
        if op in ("ArgMax", "Binarizer", "Greater"):
            return _LABEL if op != "ArgMax" or axis in (1, -1) else None
        if op in ("Identity", "ZipMap") or (op == "Flatten" and axis in (None, 1)):
            return _NETWORK
        if op == "Cast":
            return _NETWORK if self.reader.attribute(index, "to", 0) in _ELEMENT_DTYPES else None
        if op == "Reshape" and len(node.input) == 2 and node.input[0] == data[0]:
            shape = self.small_constant(node.input[1])
            return _NETWORK if shape in ([-1, n_out], [0, n_out]) else None
        if op == "Sub" and n_out == 1 and list(node.input[1:]) == data:
            return _COMPLEMENT if self.small_constant(node.input[0]) == [1] else None
        return None

    def is_binary_probabilities(self, index, data, complement_of, kinds) -> bool:
        """``Concat(1 - p, p)`` over axis 1: skl2onnx's probabilities of a binary classifier."""
        node = self.reader.graph.node[index]
        return (
            node.op_type == "Concat"
            and self.reader.attribute(index, "axis", None) in (1, -1)
            and len(data) == 2
            and list(node.input) == data
            and kinds.get(data[1]) == _NETWORK
            and complement_of.get(data[0]) == data[1]
        )

    def small_constant(self, name: str) -> list | None:
        """Return the values of a small constant held in the model (a shape, a 1), else None."""
        tensor = self.reader.constants.get(name)
        if (
            tensor is None
            or tensor.data_location == self.reader.onnx.TensorProto.EXTERNAL
            or math.prod(tensor.dims) > _SMALL_CONSTANT
        ):
            return None
        return self.reader.onnx.numpy_helper.to_array(tensor).reshape(-1).tolist()

    def producer(self, tensor: str) -> str:
        """Say where ``tensor`` comes from, for a message."""
        if tensor in self.reader.constants:
            return "a constant"
        for index, node in enumerate(self.reader.graph.node):
            if tensor in node.output:
                inside = " inside the network" if index in self.reader.mapped else ""
                return f"what {self.reader.where(index)} computes{inside}"
        if any(value.name == tensor for value in self.reader.graph.input):
            return "the graph's input"
        return "computed by no node"


def _other(pair: Iterable[str], tensor: str) -> str:
    rest = [t for t in pair if t != tensor]
    return rest[0] if rest else tensor


def _unmappable(op: str) -> str:
    if op in _ACTIVATION_OPS:
        return "is an activation where no fully connected layer precedes it"
    if op in ("Gemm", "MatMul", "Add"):
        return "does not continue the chain of layers from the input"
    return f"is not part of a fully connected network ({op} has no counterpart in deltaprop)"


def _restore_deltaprop_fields(layers: Layers, metadata: dict[str, str]) -> None:
    """Take the cost, the hidden activation and the exact slope from deltaprop's metadata.

    The graph is the truth; metadata fills only what it cannot say (the cost, the hidden
    activation of a network without hidden layers, the digits of a float32 slope) and is
    used only where it agrees with the graph.
    """
    try:
        fields = {key: _metadata_value(key, value) for key, value in metadata.items()}
        architecture = Architecture.from_fields(fields)
    except (KeyError, ValueError, TypeError):  # metadata edited by hand: the graph alone
        return
    if architecture.output != layers.output:
        return
    layers.cost = architecture.cost
    if len(layers.weights) == 1:  # no hidden layer in the graph to say what they would be
        layers.activation, layers.leaky_slope = architecture.activation, architecture.leaky_slope
    # LeakyRelu's alpha holds the slope rounded to float32, as a float32 network uses it.
    elif architecture.activation == layers.activation and all(
        np.float32(recorded) == np.float32(read)
        for name, recorded, read in zip(
            architecture.activations, architecture.leaky_slopes, _graph_slopes(layers)
        )
        if name == "leaky_relu"
    ):
        layers.leaky_slope = architecture.leaky_slope


def _metadata_value(key: str, value: str) -> Any:
    """Read a metadata entry as the model file's field: JSON for numbers and lists."""
    import json  # here only: costly at import time, which loads this module

    numbers = key in ("sizes", "leaky_slope")
    return json.loads(value) if numbers or value.startswith("[") else value


def _graph_slopes(layers: Layers) -> tuple[float, ...]:
    """Give the slope the graph gives each hidden layer."""
    slope = layers.leaky_slope
    return slope if isinstance(slope, tuple) else (slope,) * (len(layers.weights) - 1)
