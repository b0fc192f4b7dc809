"""ONNX export and import of networks (``pip install "deltaprop[onnx]"``).

Export writes a network as a graph of standard operators, built with the ``onnx`` package's
helpers: one ``Gemm`` per layer (``transB=1``: W^l is stored as deltaprop holds it, (n_l,
n_{l-1})) followed by its activation, from the input ``X`` of shape (N, n_0), N symbolic, to
the output ``output`` of shape (N, n_L): what `Network.predict` returns; a network's input
scaling (``fit(standardize=True)``) comes first, as ``Sub`` and ``Div`` (see
`deltaprop._onnx_scaling`, which import reads too). The fitted
scikit-learn estimators export with skl2onnx's conventions (outputs ``label`` and
``probabilities``, or ``variable`` for a regressor). The model's metadata says what the
network is: producer deltaprop and its version, layer sizes, activations, cost, dtype.

Opset `OPSET` (9) is the lowest that onnxruntime runs every exported model with, float32 and
float64 alike, on its CPU provider: ``Where`` (in the float64 ``leaky_relu`` below) came in
opset 9, everything else (``Gemm``, the activations, ``Softmax`` on a 2-D input over axis 1,
``ArgMax``, ``Gather``, ``Greater``, ``Cast`` and ai.onnx.ml's ``ZipMap`` for classifiers)
runs from opset 7; the lowest opset reaches the most runtimes.

Every output keeps its dtype's relative precision, the smallest included: onnxruntime's
``Sigmoid`` does not (float32: an approximation with absolute errors near 1e-8; float64: it
goes through tanh and loses relative precision below about 1e-9), so a sigmoid is written as
``1 / (1 + exp(-z))`` (``Neg``, ``Exp``, ``Add``, ``Reciprocal``). A float64 ``leaky_relu``
is written as ``Where(z > 0, z, slope * z)``: ``LeakyRelu``'s ``alpha`` attribute is a
float32 (the slope 0.01 would become 0.00999999977, changing outputs by about 1e-10), and
onnxruntime has no float64 ``LeakyRelu`` before opset 16. float32 networks use ``LeakyRelu``,
whose float32 ``alpha`` is the slope they compute with.

Import (`read`) maps any graph that is a chain of fully connected layers onto `Layers`:
``Gemm`` with any ``alpha``, ``beta``, ``transB`` (and ``transA`` after a ``Transpose`` of
the data), or ``MatMul`` then ``Add``, each followed by at most one supported activation
(``Sigmoid``, ``Tanh``, ``Relu``, ``LeakyRelu``, ``Softmax`` over the units, ``Identity``, or
the forms above), as written by ``torch.onnx.export`` of an ``nn.Sequential``, by
skl2onnx for ``MLPClassifier`` and ``MLPRegressor`` and by `export`. What follows the
network's output in skl2onnx's classifiers (``ArgMax``, ``ArrayFeatureExtractor``,
``ZipMap``, ``Binarizer``, ``Cast``, ``Reshape``, the binary case's ``Sub`` and ``Concat``)
is recognised and set aside. The graph must output the chain's end (as is, or as skl2onnx
writes it: through ``Identity``, ``Cast``, ``Reshape``, ``ZipMap``, the binary case's
``Concat(1 - p, p)``), besides labels derived from it; a graph outputting a hidden layer, a
pre-activation, a piece of the output or nothing is refused. Anything else raises
`UnsupportedGraphError`, naming the first node (or output) that cannot be mapped and why;
a file that is not a well-formed model raises `ModelFormatError`. Every tensor's declared
size is checked against the bytes that hold it before it is read; external data (what
``torch.onnx.export`` writes next to large models) is read from files in the model's own
directory only, opened without following a symbolic link and checked by their descriptor
(`deltaprop._files.open_inside`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _onnx_scaling
from ._architecture import Architecture
from ._checks import check_int
from ._container import ModelFormatError
from ._files import open_regular, write_atomically
from ._onnx_reader import Reader, UnsupportedGraphError
from ._version import __version__
from .interop import Layers

__all__ = [
    "MAX_BYTES",
    "OPSET",
    "PEAK_FACTOR",
    "ModelFormatError",
    "UnsupportedGraphError",
    "classifier_model",
    "export",
    "network_model",
    "read",
    "regressor_model",
    "write",
]

OPSET = 9
_ML_OPSET = 1  # ai.onnx.ml, for ZipMap
INPUT = "X"
OUTPUT = "output"
_BATCH = "N"
_INSTALL = 'pip install "deltaprop[onnx]"'
_MAX_FILE_BYTES = 2**31  # protobuf's own limit for one message
#: Default of `read`'s ``max_bytes``: the most bytes of a model (file and external data) read.
MAX_BYTES = 1 << 30
#: At most about this many times a model's bytes are resident while it is read (its bytes,
#: the parsed model, the weights, the network; 2.1 to 2.3 measured for 40 and 80 MB models
#: of raw float32 and float64 weights, repeated floats and external data).
PEAK_FACTOR = 3


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as error:
        raise ImportError(f"ONNX export and import need the onnx package: {_INSTALL}") from error
    return onnx


# ---------------------------------------------------------------------------------- export
def export(net: Any, path: str | os.PathLike, *, opset: int = OPSET) -> None:
    """Write a network, or a fitted deltaprop estimator, to an ONNX file.

    Calls ``net.to_onnx(path, opset=opset)``: see `deltaprop.Network.to_onnx` and the
    estimators' ``to_onnx``.

    Parameters
    ----------
    net : Network, DeltapropClassifier or DeltapropRegressor
        What to export.
    path : str or os.PathLike
        Destination file (``.onnx``), written atomically.
    opset : int, default=OPSET
        ONNX opset of the default domain, from `OPSET` to the newest the ``onnx`` package
        knows.

    Raises
    ------
    TypeError
        ``net`` cannot be exported.
    ValueError
        An invalid ``opset``.
    ImportError
        The ``onnx`` package is not installed.
    OSError
        The file cannot be written.
    """
    to_onnx = getattr(net, "to_onnx", None)
    if not callable(to_onnx):
        raise TypeError(
            f"net: expected a Network or a fitted deltaprop estimator, got {type(net).__name__}"
        )
    to_onnx(path, opset=opset)


def write(path: str | os.PathLike, model: Any) -> None:
    """Write an ONNX model to a file atomically (see `deltaprop.Network.save`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    model : onnx.ModelProto
        The model.

    Raises
    ------
    OSError
        The file cannot be written.
    """
    data = model.SerializeToString()
    write_atomically(path, lambda file: file.write(data))


def network_model(
    architecture: Architecture,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    *,
    opset: int = OPSET,
    scaling: Any = None,
) -> Any:
    """Build the ONNX model of a network: input ``X`` (N, n_0), output ``output`` (N, n_L).

    Parameters
    ----------
    architecture : Architecture
        The network's.
    weights : sequence of ndarray, W^l of shape (n_l, n_{l-1})
        Of the architecture's dtype.
    biases : sequence of ndarray, b^l of shape (n_l,)
        Of the architecture's dtype.
    opset : int, default=OPSET
        Opset of the default domain.
    scaling : Scaling or None, default=None
        The network's input scaling (`deltaprop.Network.input_mean` and ``input_scale``),
        written as ``Sub`` and ``Div`` before the first ``Gemm``; None: none.

    Returns
    -------
    onnx.ModelProto
        The model, with deltaprop's metadata.

    Raises
    ------
    ImportError
        The ``onnx`` package is not installed.
    ValueError
        An invalid ``opset``.
    """
    graph = _Graph(_onnx(), architecture.dtype)
    graph.network(architecture, weights, biases, INPUT, OUTPUT, scaling)
    graph.output(OUTPUT, graph.element, [_BATCH, architecture.sizes[-1]])
    return graph.model(architecture, opset, "a deltaprop network: output is Network.predict")


def classifier_model(
    architecture: Architecture,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    classes: np.ndarray,
    *,
    multilabel: bool = False,
    zipmap: bool = False,
    opset: int = OPSET,
    scaling: Any = None,
) -> Any:
    """Build the ONNX model of a classifier, with skl2onnx's outputs.

    Outputs ``label`` (N,) (the class values; for a multilabel target, (N, n_labels) of
    0/1) and ``probabilities`` (N, n_classes) of the network's dtype; with ``zipmap``,
    ``output_label`` and ``output_probability``, a sequence of maps from class to float32
    probability (skl2onnx's default).

    Parameters
    ----------
    architecture : Architecture
        The network's.
    weights : sequence of ndarray, W^l of shape (n_l, n_{l-1})
        Its weights.
    biases : sequence of ndarray, b^l of shape (n_l,)
        Its biases.
    classes : ndarray of shape (n_classes,)
        The class values, integers or strings, in the order of the network's outputs.
    multilabel : bool, default=False
        Sigmoid outputs, one a label: the label is ``probabilities > 0.5``.
    zipmap : bool, default=False
        skl2onnx's ZipMap output instead of the probability tensor.
    opset : int, default=OPSET
        Opset of the default domain.
    scaling : Scaling or None, default=None
        The network's input scaling (`deltaprop.Network.input_mean` and ``input_scale``),
        written as ``Sub`` and ``Div`` before the first ``Gemm``; None: none.

    Returns
    -------
    onnx.ModelProto
        The model.

    Raises
    ------
    ImportError
        The ``onnx`` package is not installed.
    TypeError
        Classes that are neither integers nor strings.
    ValueError
        An invalid ``opset``.
    """
    onnx = _onnx()
    graph = _Graph(onnx, architecture.dtype)
    graph.network(architecture, weights, biases, INPUT, "probabilities", scaling)
    n_out = architecture.sizes[-1]
    label = "label"
    if multilabel:
        threshold = graph.constant("half", np.array(0.5, architecture.dtype))
        graph.node("Greater", ["probabilities", threshold], ["positive"])
        graph.node("Cast", ["positive"], [label], to=onnx.TensorProto.INT64)
        label_type, label_shape = onnx.TensorProto.INT64, [_BATCH, n_out]
    else:
        values = _class_values(classes)
        graph.node("ArgMax", ["probabilities"], ["class_index"], axis=1, keepdims=0)
        graph.initializers.append(onnx.numpy_helper.from_array(values, "classes"))
        graph.node("Gather", ["classes", "class_index"], [label], axis=0)
        label_type = onnx.helper.np_dtype_to_tensor_dtype(values.dtype)
        label_shape = [_BATCH]
    if zipmap:
        graph.node("Identity", [label], ["output_label"])
        graph.output("output_label", label_type, label_shape)
        graph.zipmap("probabilities", "output_probability", classes, multilabel)
    else:
        graph.output(label, label_type, label_shape)
        graph.output("probabilities", graph.element, [_BATCH, n_out])
    return graph.model(architecture, opset, "a DeltapropClassifier")


def regressor_model(
    architecture: Architecture,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    *,
    opset: int = OPSET,
    scaling: Any = None,
) -> Any:
    """Build the ONNX model of a regressor: output ``variable`` (N, n_targets), as skl2onnx.

    Parameters
    ----------
    architecture : Architecture
        The network's.
    weights : sequence of ndarray, W^l of shape (n_l, n_{l-1})
        Its weights.
    biases : sequence of ndarray, b^l of shape (n_l,)
        Its biases.
    opset : int, default=OPSET
        Opset of the default domain.
    scaling : Scaling or None, default=None
        The network's input scaling (`deltaprop.Network.input_mean` and ``input_scale``),
        written as ``Sub`` and ``Div`` before the first ``Gemm``; None: none.

    Returns
    -------
    onnx.ModelProto
        The model.

    Raises
    ------
    ImportError
        The ``onnx`` package is not installed.
    ValueError
        An invalid ``opset``.
    """
    graph = _Graph(_onnx(), architecture.dtype)
    graph.network(architecture, weights, biases, INPUT, "variable", scaling)
    graph.output("variable", graph.element, [_BATCH, architecture.sizes[-1]])
    return graph.model(architecture, opset, "a DeltapropRegressor")


def _class_values(classes: np.ndarray) -> np.ndarray:
    classes = np.asarray(classes)
    if classes.dtype.kind in "iub":
        return classes.astype(np.int64)
    if classes.dtype.kind in "UO" and all(isinstance(c, str) for c in classes.tolist()):
        return classes.astype(object)
    raise TypeError(
        f"classes: ONNX labels are integers or strings (as in skl2onnx), got dtype {classes.dtype}"
    )


class _Graph:
    """The nodes, initializers and outputs of a model being built."""

    def __init__(self, onnx: Any, dtype: np.dtype) -> None:
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.element = onnx.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.outputs: list[Any] = []
        self.uses_ml = False

    def node(self, op: str, inputs: list[str], outputs: list[str], **attributes: Any) -> None:
        self.nodes.append(
            self.onnx.helper.make_node(op, inputs, outputs, name=outputs[0], **attributes)
        )

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
        return name

    def output(self, name: str, element: int, shape: list) -> None:
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, element, shape))

    def network(self, architecture, weights, biases, source: str, result: str, scaling) -> None:
        """Add the layers: Gemm, then the activation, from ``source`` to ``result``.

        A scaling (None: none) goes first.
        """
        a_prev = source if scaling is None else _onnx_scaling.write(self, scaling, source)
        L = len(weights)
        for l, (W, b) in enumerate(zip(weights, biases), start=1):
            # Each hidden layer's own activation and slope; the output has no slope.
            activation = architecture.output if l == L else architecture.activations[l - 1]
            slope = 0.0 if l == L else architecture.leaky_slopes[l - 1]
            z = result if l == L and activation == "identity" else f"z{l}"
            self.constant(f"W{l}", np.asarray(W, self.dtype))
            self.constant(f"b{l}", np.asarray(b, self.dtype))
            self.node("Gemm", [a_prev, f"W{l}", f"b{l}"], [z], transB=1)
            a_prev = self.activation(activation, slope, z, result if l == L else f"a{l}", l)

    def activation(self, name: str, slope: float, z: str, a: str, l: int) -> str:
        """Add activation ``name`` from ``z`` to ``a``; return the tensor that holds it."""
        if name == "identity":
            return z
        if name == "leaky_relu" and self.dtype == np.float64:
            zero = self.constant(f"zero{l}", np.zeros((), self.dtype))
            slope_value = self.constant(f"slope{l}", np.array(slope, self.dtype))
            self.node("Greater", [z, zero], [f"positive{l}"])
            self.node("Mul", [z, slope_value], [f"negative{l}"])
            self.node("Where", [f"positive{l}", z, f"negative{l}"], [a])
        elif name == "leaky_relu":
            self.node("LeakyRelu", [z], [a], alpha=slope)
        elif name == "sigmoid":
            one = self.constant(f"one{l}", np.ones((), self.dtype))
            self.node("Neg", [z], [f"minus_z{l}"])
            self.node("Exp", [f"minus_z{l}"], [f"exp_minus_z{l}"])
            self.node("Add", [f"exp_minus_z{l}", one], [f"denominator{l}"])
            self.node("Reciprocal", [f"denominator{l}"], [a])
        elif name == "softmax":
            self.node("Softmax", [z], [a], axis=1)
        else:
            self.node({"tanh": "Tanh", "relu": "Relu"}[name], [z], [a])
        return a

    def zipmap(self, probabilities: str, result: str, classes: np.ndarray, multilabel: bool):
        """skl2onnx's ZipMap output: float32 probabilities keyed by class."""
        self.uses_ml = True
        float32 = self.onnx.TensorProto.FLOAT
        if self.element != float32:
            self.node("Cast", [probabilities], ["probabilities_float32"], to=float32)
            probabilities = "probabilities_float32"
        values = np.arange(len(classes)) if multilabel else _class_values(classes)
        keys = (
            {"classlabels_int64s": [int(c) for c in values]}
            if values.dtype.kind == "i"
            else {"classlabels_strings": [str(c) for c in values]}
        )
        self.nodes.append(
            self.onnx.helper.make_node(
                "ZipMap", [probabilities], [result], name=result, domain="ai.onnx.ml", **keys
            )
        )
        helper = self.onnx.helper
        proto = self.onnx.TensorProto
        key_type = proto.INT64 if values.dtype.kind == "i" else proto.STRING
        value = helper.make_sequence_type_proto(
            helper.make_map_type_proto(key_type, helper.make_tensor_type_proto(float32, None))
        )
        self.outputs.append(helper.make_value_info(result, value))

    def model(self, architecture: Architecture, opset: int, what: str) -> Any:
        helper = self.onnx.helper
        newest = self.onnx.defs.onnx_opset_version()
        opset = check_int(opset, "opset")
        if not OPSET <= opset <= newest:
            raise ValueError(f"opset: expected an integer in [{OPSET}, {newest}], got {opset}")
        X = helper.make_tensor_value_info(INPUT, self.element, [_BATCH, architecture.sizes[0]])
        graph = helper.make_graph(
            self.nodes, "deltaprop", [X], self.outputs, initializer=self.initializers
        )
        opsets = [helper.make_opsetid("", opset)]
        if self.uses_ml:
            opsets.append(helper.make_opsetid("ai.onnx.ml", _ML_OPSET))
        model = helper.make_model(
            graph,
            opset_imports=opsets,
            producer_name="deltaprop",
            producer_version=__version__,
            doc_string=f"{what}: {architecture}",
            ir_version=helper.find_min_ir_version_for(opsets),
        )
        metadata = {key: _metadata_text(value) for key, value in architecture.fields().items()}
        helper.set_model_props(model, metadata)
        return model


def _metadata_text(value: Any) -> str:
    import json  # here only: costly at import time, which loads this module

    return value if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------------------------- import
def read(source: str | os.PathLike | bytes | Any, *, max_bytes: int = MAX_BYTES) -> Layers:
    """Read the network of an ONNX model.

    Parameters
    ----------
    source : str, os.PathLike, bytes or onnx.ModelProto
        An ONNX file, its bytes, or a model in memory. External data is read from files
        in the model file's directory (so only when ``source`` is a path).
    max_bytes : int, default=MAX_BYTES (1 GiB)
        The most bytes read: the file (or the bytes given) and its external data together.
        A larger model is refused before it is parsed, or before the external data that
        passes the limit is read. Reading takes about `PEAK_FACTOR` times that much memory
        at its peak (the bytes, the parsed model, the weights, the network built from
        them); raise it to read larger models (protobuf reads 2 GiB at most in one file).

    Returns
    -------
    Layers
        Weights, biases and activations, in the graph's dtype; ``cost`` is the one
        deltaprop's metadata records (None for models from elsewhere).

    Raises
    ------
    ImportError
        The ``onnx`` package is not installed.
    FileNotFoundError, PermissionError, IsADirectoryError
        The file cannot be opened.
    ModelFormatError
        Not a well-formed ONNX model: undecodable bytes, a tensor whose size disagrees with
        its data, non-finite weights, external data outside the model's directory; or a
        model over ``max_bytes``.
    UnsupportedGraphError
        A well-formed graph that is not a chain of fully connected layers; the message
        names the first node that cannot be mapped and why.
    TypeError, ValueError
        ``max_bytes`` is not an integer >= 0.
    """
    onnx = _onnx()
    max_bytes = check_int(max_bytes, "max_bytes", minimum=0)
    name, directory, budget = "model", None, max_bytes
    if not isinstance(source, onnx.ModelProto):
        if not isinstance(source, (bytes, bytearray, memoryview)):
            name = os.fspath(source)
            directory = os.path.dirname(os.path.abspath(name))
        source, size = _parse(onnx, source, name, max_bytes)  # the bytes freed on return
        budget -= size
    try:
        return Reader(onnx, source, name, directory, budget).layers()
    except ModelFormatError:
        raise
    # Hostile graphs hide their damage anywhere (a node without inputs, an attribute of the
    # wrong type): whatever the walk trips over is a malformed model, never a crash.
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as error:
        raise ModelFormatError(
            f"{name}: malformed graph ({type(error).__name__}: {error})"
        ) from None


def _parse(onnx: Any, source: Any, name: str, max_bytes: int) -> tuple[Any, int]:
    """Parse a model from its bytes or its file (named ``name``), at most ``max_bytes``.

    Return it and its size in bytes.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source if isinstance(source, bytes) else bytes(source)
        _check_size(name, len(data), max_bytes)
    else:
        data = _read_file(name, max_bytes)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    # protobuf's DecodeError lives in a package this one does not import; whatever the
    # parser raises on hostile bytes means the same.
    except Exception as error:
        raise ModelFormatError(f"{name}: not an ONNX model ({error})") from None
    return model, len(data)


def _read_file(path: str, max_bytes: int) -> bytes:
    with open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        if size > _MAX_FILE_BYTES:
            raise ModelFormatError(f"{path}: {size} bytes, over protobuf's 2 GiB limit")
        _check_size(path, size, max_bytes)
        return file.read()


def _check_size(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ModelFormatError(
            f"{name}: {size} bytes, over max_bytes={max_bytes} (reading takes about "
            f"{PEAK_FACTOR} times as much memory); pass a larger max_bytes to read it"
        )
