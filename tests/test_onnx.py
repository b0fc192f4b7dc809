"""ONNX export and import: exported models run in onnxruntime as predict does, models from
torch.onnx, skl2onnx and deltaprop itself come back as networks, other graphs and damaged
files are refused with a clear error."""

from __future__ import annotations

import itertools
import json
import os
import tracemalloc
import warnings

import numpy as np
import pytest

import deltaprop as dp
from conftest import assert_close

onnx = pytest.importorskip("onnx", reason='the onnx extra: pip install ".[onnx]"')
ort = pytest.importorskip("onnxruntime", reason='the onnx extra: pip install ".[onnx]"')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
COMBINATIONS = list(itertools.product(dp.ACTIVATIONS, dp.OUTPUTS, ["float64", "float32"]))
IDS = [f"{a}-{o}-{d}" for a, o, d in COMBINATIONS]


def network(activation, output, dtype, sizes=(5, 7, 6, 3), leaky_slope=0.01, seed=3):
    cost = {"softmax": "log_likelihood", "sigmoid": "cross_entropy"}.get(output, "quadratic")
    return dp.Network(
        list(sizes),
        activation=activation,
        output=output,
        cost=cost,
        dtype=dtype,
        seed=seed,
        leaky_slope=leaky_slope,
    )


def session(model_or_path, threads: int = 1):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    source = (
        model_or_path.SerializeToString() if hasattr(model_or_path, "graph") else str(model_or_path)
    )
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(model_or_path, X, threads: int = 1):
    return session(model_or_path, threads).run(None, {"X": X})


def inputs(rng, n, n_in, dtype, saturating):
    X = rng.normal(size=(n, n_in))
    return (X * 300 if saturating else X).astype(dtype)


# ---------------------------------------------------------------------------------- export
@pytest.mark.parametrize(("activation", "output", "dtype"), COMBINATIONS, ids=IDS)
def test_exported_model_runs_as_predict(tmp_path, rng, activation, output, dtype):
    net = network(activation, output, dtype)
    path = tmp_path / "net.onnx"
    net.to_onnx(path)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    runner = session(path)
    for n, saturating in itertools.product((1, 7, 10_000), (False, True)):
        X = inputs(rng, n, 5, dtype, saturating)
        (actual,) = runner.run(None, {"X": X})
        assert actual.dtype == net.dtype and actual.shape == (n, 3)
        assert_close(actual, net.predict(X), TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("slope", [0.01, 0.25, -0.3, 1.7])
def test_leaky_relu_keeps_its_slope_exactly_in_float64(tmp_path, rng, dtype, slope):
    net = network("leaky_relu", "identity", dtype, leaky_slope=slope)
    net.to_onnx(tmp_path / "net.onnx")
    model = onnx.load(tmp_path / "net.onnx")
    ops = {node.op_type for node in model.graph.node}
    assert ("LeakyRelu" in ops) == (dtype == "float32") and ("Where" in ops) == (dtype == "float64")
    X = inputs(rng, 500, 5, dtype, saturating=False)
    assert_close(run(model, X)[0], net.predict(X), TOLERANCE[dtype])


def test_the_model_describes_the_network(tmp_path):
    net = network("tanh", "softmax", "float32")
    net.to_onnx(tmp_path / "net.onnx")
    model = onnx.load(tmp_path / "net.onnx")
    assert model.producer_name == "deltaprop" and model.producer_version == dp.__version__
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata["sizes"]) == [5, 7, 6, 3]
    assert metadata["activation"] == "tanh" and metadata["output"] == "softmax"
    assert metadata["cost"] == "log_likelihood" and metadata["dtype"] == "float32"
    assert [(o.domain, o.version) for o in model.opset_import] == [("", dp.onnx.OPSET)]
    (X,) = model.graph.input
    assert X.name == "X" and X.type.tensor_type.elem_type == TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in X.type.tensor_type.shape.dim] == ["N", 5]
    assert [o.name for o in model.graph.output] == ["output"]
    assert [n.op_type for n in model.graph.node] == [
        "Gemm",
        "Tanh",
        "Gemm",
        "Tanh",
        "Gemm",
        "Softmax",
    ]


MIXED_HIDDEN = ("leaky_relu", "tanh", "sigmoid", "relu", "leaky_relu", "identity")


@pytest.mark.parametrize("output", dp.OUTPUTS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_each_hidden_layer_exports_its_own_activation(tmp_path, rng, output, dtype):
    """A network with an activation and a slope per hidden layer runs in onnxruntime as
    predict does, and comes back the same network, bit for bit."""
    sizes = (5, 7, 6, 4, 6, 5, 4, 3)
    slopes = (0.25, 0.01, 0.01, 0.01, -0.3, 0.01)
    net = dp.Network(list(sizes), activation=MIXED_HIDDEN, leaky_slope=slopes, output=output,
                     cost="quadratic", dtype=dtype, seed=5)  # fmt: skip
    net.to_onnx(tmp_path / "net.onnx")
    model = onnx.load(tmp_path / "net.onnx")
    onnx.checker.check_model(model, full_check=True)
    leaky = "Where" if dtype == "float64" else "LeakyRelu"
    assert [n.op_type for n in model.graph.node if n.op_type in (leaky, "Tanh", "Relu")] == [
        leaky, "Tanh", "Relu", leaky,
    ]  # fmt: skip
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata["activation"]) == list(MIXED_HIDDEN)
    assert json.loads(metadata["leaky_slope"]) == list(slopes)
    for saturating in (False, True):
        X = inputs(rng, 50, 5, dtype, saturating)
        assert_close(run(model, X)[0], net.predict(X), TOLERANCE[dtype])
    back = dp.Network.from_onnx(tmp_path / "net.onnx")
    assert back.architecture == net.architecture and back.activations == MIXED_HIDDEN
    np.testing.assert_array_equal(back.params, net.params)


@pytest.mark.parametrize("opset", [9, 13, 18, 21])
def test_other_opsets(tmp_path, rng, opset):
    net = network("leaky_relu", "softmax", "float64")
    dp.onnx.export(net, tmp_path / "net.onnx", opset=opset)
    model = onnx.load(tmp_path / "net.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    X = inputs(rng, 7, 5, "float64", saturating=False)
    assert_close(run(model, X)[0], net.predict(X), 1e-12)


@pytest.mark.parametrize(
    ("opset", "error"),
    [(8, ValueError), (10_000, ValueError), ("13", TypeError), (True, TypeError)],
)
def test_invalid_opsets_are_refused(tmp_path, opset, error):
    with pytest.raises(error, match="opset"):
        network("relu", "identity", "float64").to_onnx(tmp_path / "net.onnx", opset=opset)
    assert not (tmp_path / "net.onnx").exists()


def test_export_takes_networks_and_estimators_only(tmp_path):
    with pytest.raises(TypeError, match="net: expected a Network"):
        dp.onnx.export(object(), tmp_path / "x.onnx")


def test_export_replaces_a_file_atomically(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(b"old")
    network("relu", "identity", "float64").to_onnx(path)
    assert onnx.load(path).producer_name == "deltaprop"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]
    with pytest.raises(IsADirectoryError):
        network("relu", "identity", "float64").to_onnx(tmp_path)


def test_without_the_onnx_package_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "deltaprop\[onnx\]"'):
        network("relu", "identity", "float64").to_onnx(tmp_path / "net.onnx")
    with pytest.raises(ImportError, match=r'pip install "deltaprop\[onnx\]"'):
        dp.Network.from_onnx(tmp_path / "net.onnx")


# -------------------------------------------------------------------- estimators' export
sklearn = pytest.importorskip("sklearn", reason='scikit-learn: pip install ".[sklearn]"')
from deltaprop.sklearn import DeltapropClassifier, DeltapropRegressor  # noqa: E402

LABELS = {
    "int": lambda rng, n: rng.integers(0, 3, n) * 5 - 2,
    "str": lambda rng, n: np.array(["cat", "dog", "emu"])[rng.integers(0, 3, n)],
    "binary": lambda rng, n: rng.integers(0, 2, n),
    "multilabel": lambda rng, n: rng.integers(0, 2, (n, 3)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", LABELS)
def test_classifier_exports_with_skl2onnx_conventions(tmp_path, rng, kind, dtype):
    X, y = rng.normal(size=(80, 4)), LABELS[kind](rng, 80)
    classifier = DeltapropClassifier(
        hidden_layer_sizes=(6,), max_iter=3, dtype=dtype, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 3 epochs
        classifier.fit(X, y)
    X_test = X.astype(dtype)
    classifier.to_onnx(tmp_path / "plain.onnx")
    onnx.checker.check_model(onnx.load(tmp_path / "plain.onnx"), full_check=True)
    runner = session(tmp_path / "plain.onnx")
    assert [o.name for o in runner.get_outputs()] == ["label", "probabilities"]
    for n, saturating in itertools.product((1, 7, 10_000), (False, True)):
        X_n = inputs(rng, n, 4, dtype, saturating)
        label, probabilities = runner.run(None, {"X": X_n})
        np.testing.assert_array_equal(label, classifier.predict(X_n))
        assert_close(probabilities, classifier.predict_proba(X_n), TOLERANCE[dtype])

    classifier.to_onnx(tmp_path / "zipmap.onnx", zipmap=True)
    onnx.checker.check_model(onnx.load(tmp_path / "zipmap.onnx"), full_check=True)
    label, maps = run(tmp_path / "zipmap.onnx", X_test)
    np.testing.assert_array_equal(label, classifier.predict(X_test))
    keys = list(classifier.classes_) if kind != "multilabel" else [0, 1, 2]
    assert [list(m) for m in maps] == [keys] * len(X)
    assert_close([list(m.values()) for m in maps], classifier.predict_proba(X_test), 1e-6)
    # The network comes back from either file.
    for name in ("plain.onnx", "zipmap.onnx"):
        net = dp.Network.from_onnx(tmp_path / name)
        np.testing.assert_array_equal(net.params, classifier.network_.params)


def test_regressor_exports_its_variable(tmp_path, rng):
    X = rng.normal(size=(50, 3))
    regressor = DeltapropRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        regressor.fit(X, X @ [1.0, 2.0, -1.0])
    dp.onnx.export(regressor, tmp_path / "reg.onnx")
    assert [o.name for o in session(tmp_path / "reg.onnx").get_outputs()] == ["variable"]
    runner = session(tmp_path / "reg.onnx")
    for n, saturating in itertools.product((1, 7, 10_000), (False, True)):
        X_n = inputs(rng, n, 3, "float64", saturating)
        (variable,) = runner.run(None, {"X": X_n})
        assert_close(variable[:, 0], regressor.predict(X_n), 1e-12)


def test_unfitted_estimators_do_not_export(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DeltapropClassifier().to_onnx(tmp_path / "c.onnx")


# ---------------------------------------------------------------------------------- import
@pytest.mark.parametrize(("activation", "output", "dtype"), COMBINATIONS, ids=IDS)
def test_export_then_import_is_the_identity(tmp_path, activation, output, dtype):
    for sizes in ((5, 7, 6, 3), (4, 2)):
        net = network(activation, output, dtype, sizes=sizes, leaky_slope=0.07)
        net.to_onnx(tmp_path / "net.onnx")
        back = dp.Network.from_onnx(tmp_path / "net.onnx")
        assert back.architecture == net.architecture
        assert back.params.dtype == net.params.dtype
        assert back.params.tobytes() == net.params.tobytes()


def test_import_reads_bytes_and_models_and_can_choose_cost_and_dtype(tmp_path, rng):
    net = network("relu", "softmax", "float32")
    net.to_onnx(tmp_path / "net.onnx")
    data = (tmp_path / "net.onnx").read_bytes()
    assert dp.Network.from_onnx(data).params.tobytes() == net.params.tobytes()
    other = dp.Network.from_onnx(
        onnx.load_model_from_string(data), cost="quadratic", dtype="float64"
    )
    assert other.cost_name == "quadratic" and other.dtype == np.float64
    with pytest.raises(ValueError, match="cost"):
        dp.Network.from_onnx(data, cost="cross_entropy")  # not with softmax


def test_an_imported_network_trains_further(tmp_path, rng):
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 3, 200)
    net = network("tanh", "softmax", "float64")
    net.to_onnx(tmp_path / "net.onnx")
    back = dp.Network.from_onnx(tmp_path / "net.onnx")
    before = back.cost(X, y)
    back.fit(X, y, epochs=5, batch_size=20, lr=0.1)
    assert back.cost(X, y) < before


torch = pytest.importorskip("torch", reason="PyTorch (in the test extra)")
TORCH_ACTIVATIONS = {
    "sigmoid": torch.nn.Sigmoid,
    "tanh": torch.nn.Tanh,
    "relu": torch.nn.ReLU,
    "leaky_relu": lambda: torch.nn.LeakyReLU(0.2),
    "identity": torch.nn.Identity,
}
TORCH_OUTPUTS = {
    "sigmoid": torch.nn.Sigmoid,
    "softmax": lambda: torch.nn.Softmax(dim=1),
    "identity": torch.nn.Identity,
}


def sequential(activation: str, output: str, dtype: str, bias: bool = True):
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(5, 7, bias=bias),
        TORCH_ACTIVATIONS[activation](),
        torch.nn.Linear(7, 6),
        TORCH_ACTIVATIONS[activation](),
        torch.nn.Linear(6, 3),
        TORCH_OUTPUTS[output](),
    )
    return module.to(getattr(torch, dtype)).eval()


def torch_predict(module, X):
    with torch.inference_mode():
        return module(torch.from_numpy(X)).numpy()


# The dynamo exporter takes seconds a model: three pairings in both dtypes cover it.
DYNAMO = {("relu", "softmax"), ("leaky_relu", "sigmoid"), ("identity", "identity")}
TORCH_EXPORTS = [pytest.param(*c, False, id=f"{i}-torchscript") for c, i in zip(COMBINATIONS, IDS)]
TORCH_EXPORTS += [
    pytest.param(*c, True, id=f"{i}-dynamo") for c, i in zip(COMBINATIONS, IDS) if c[:2] in DYNAMO
]


@pytest.mark.parametrize(("activation", "output", "dtype", "dynamo"), TORCH_EXPORTS)
def test_import_of_torch_onnx_export(tmp_path, rng, activation, output, dtype, dynamo):
    module = sequential(activation, output, dtype)
    X = inputs(rng, 7, 5, dtype, saturating=False)
    path = tmp_path / "torch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracing warnings
        options = (
            {"dynamic_shapes": ({0: torch.export.Dim("N")},)}
            if dynamo
            else {"dynamic_axes": {"X": {0: "N"}}}
        )
        torch.onnx.export(
            module, (torch.from_numpy(X),), path, dynamo=dynamo, input_names=["X"], **options
        )
    net = dp.Network.from_onnx(path)
    assert (net.activation, net.output, net.dtype) == (activation, output, np.dtype(dtype))
    # The exporters write LeakyReLU's slope as LeakyRelu's float32 alpha: in float64 the file
    # computes with the slope rounded to float32 (about 1e-10 away); the file is what is read.
    for child in module:
        if isinstance(child, torch.nn.LeakyReLU):
            child.negative_slope = float(np.float32(child.negative_slope))
    for saturating in (False, True):
        X = inputs(rng, 7, 5, dtype, saturating)
        assert_close(net.predict(X), torch_predict(module, X), TOLERANCE[dtype])


skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx (in the test extra)")
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402


def fitted_mlp(kind: str, rng, activation="relu", dtype="float64"):
    X = rng.normal(size=(120, 4)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        if kind == "regressor":
            return MLPRegressor(
                hidden_layer_sizes=(6, 5), activation=activation, max_iter=30, random_state=0
            ).fit(X, X @ np.arange(4.0)), X
        return MLPClassifier(
            hidden_layer_sizes=(6, 5), activation=activation, max_iter=30, random_state=0
        ).fit(X, LABELS[kind](rng, 120)), X


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "tensors"])
@pytest.mark.parametrize("kind", ["int", "str", "binary", "multilabel", "regressor"])
def test_import_of_skl2onnx_mlp(rng, kind, zipmap):
    estimator, X = fitted_mlp(kind, rng, activation="tanh")
    options = None if kind == "regressor" else {id(estimator): {"zipmap": zipmap}}
    model = skl2onnx.to_onnx(estimator, X[:1].astype(np.float32), options=options)
    net = dp.Network.from_onnx(model)
    assert net.dtype == np.float32 and net.activation == "tanh"
    X32 = X.astype(np.float32)
    if kind == "regressor":
        expected = estimator.predict(X).reshape(len(X), -1)
    else:
        expected = (
            estimator.predict_proba(X)[:, 1:] if kind == "binary" else (estimator.predict_proba(X))
        )
    assert_close(net.predict(X32), expected, 1e-5)
    if kind != "regressor":
        assert net.output == ("softmax" if kind in ("int", "str") else "sigmoid")


def gemm_model(
    B,
    C,
    *,
    transA=0,
    transB=0,
    alpha=1.0,
    beta=1.0,
    matmul=False,
    add_first=False,
    activation="Relu",
    dtype=np.float64,
):
    """X (N, 4) -> one layer (Gemm or MatMul + Add) -> activation -> Gemm -> Y."""
    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes, inits = [], [numpy_helper.from_array(B.astype(dtype), "B")]
    if C is not None:
        inits.append(numpy_helper.from_array(np.asarray(C, dtype), "C"))
    if matmul:
        nodes.append(helper.make_node("MatMul", ["X", "B"], ["product"], name="matmul"))
        operands = ["C", "product"] if add_first else ["product", "C"]
        nodes.append(helper.make_node("Add", operands, ["z"], name="add"))
    else:
        source = "X"
        if transA:
            nodes.append(helper.make_node("Transpose", ["X"], ["XT"], perm=[1, 0], name="t"))
            source = "XT"
        nodes.append(
            helper.make_node(
                "Gemm",
                [source, "B"] + (["C"] if C is not None else []),
                ["z"],
                transA=transA,
                transB=transB,
                alpha=alpha,
                beta=beta,
                name="gemm",
            )
        )
    nodes.append(helper.make_node(activation, ["z"], ["a"], name="activation"))
    inits.append(numpy_helper.from_array(np.linspace(-1, 1, 6).reshape(2, 3).astype(dtype), "W2"))
    nodes.append(helper.make_node("Gemm", ["a", "W2"], ["Y"], transB=1, name="last"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", element, ["N", 4])],
        [helper.make_tensor_value_info("Y", element, ["N", 2])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.fixture
def weights(rng):
    return rng.normal(size=(4, 3)), rng.normal(size=3)  # (n_in, n_out), (n_out,)


GEMM_VARIANTS = {
    "plain": lambda W, b: gemm_model(W, b),
    "transB": lambda W, b: gemm_model(W.T.copy(), b, transB=1),
    "alpha-beta": lambda W, b: gemm_model(W, b, alpha=0.5, beta=-2.0),
    "transA": lambda W, b: gemm_model(W, b, transA=1),
    "C-row": lambda W, b: gemm_model(W, b.reshape(1, 3)),
    "C-scalar": lambda W, b: gemm_model(W, b[:1].reshape(())),
    "no-C": lambda W, b: gemm_model(W, None),
    "matmul-add": lambda W, b: gemm_model(W, b, matmul=True),
    "matmul-add-bias-first": lambda W, b: gemm_model(
        W, b.reshape(1, 3), matmul=True, add_first=True
    ),
}


@pytest.mark.parametrize("variant", GEMM_VARIANTS)
def test_fully_connected_layers_written_in_other_ways(rng, weights, variant):
    model = GEMM_VARIANTS[variant](*weights)
    onnx.checker.check_model(model, full_check=True)
    net = dp.Network.from_onnx(model)
    assert net.sizes == (4, 3, 2) and net.activation == "relu" and net.output == "identity"
    for saturating in (False, True):
        X = inputs(rng, 7, 4, "float64", saturating)
        (expected,) = session(model).run(None, {"X": X})
        assert_close(net.predict(X), expected, 1e-12)


def refused(model, match):
    with pytest.raises(dp.onnx.UnsupportedGraphError, match=match):
        dp.Network.from_onnx(model)


def test_graphs_that_are_not_such_a_chain_are_refused_naming_the_node(weights):
    W, b = weights
    refused(gemm_model(W, b, activation="Elu"), r"node 'activation' \(Elu\) is not part")
    refused(
        gemm_model(W, b, activation="Softmax"),
        r"'activation' \(Softmax\).*softmax on a "
        "hidden layer",
    )
    model = gemm_model(W, b)
    model.graph.node[-1].op_type = "Conv"
    refused(model, r"node 'last' \(Conv\)")
    model = gemm_model(W, b)  # the data as Gemm's second input
    model.graph.node[0].input[:2] = ["B", "X"]
    refused(model, r"node 'gemm' \(Gemm\) has the data as its second input")
    model = gemm_model(W, b, transA=1)
    del model.graph.node[0]
    model.graph.node[0].input[0] = "X"
    refused(model, r"'gemm' \(Gemm\) has transA=1")
    refused(gemm_model(W, np.ones(2)), r"'gemm' \(Gemm\) has a bias \(C\) of shape \(2,\)")
    model = gemm_model(W, b)  # weights computed at run time
    model.graph.initializer[0].name = "elsewhere"
    refused(model, r"'gemm' \(Gemm\) takes its weights \(B\) from 'B', which is not a constant")
    model = gemm_model(W, b)
    model.graph.input.append(helper.make_tensor_value_info("X2", TensorProto.DOUBLE, [1, 4]))
    refused(model, "2 inputs")


def test_hidden_layers_with_different_activations_are_read(rng, weights):
    model = gemm_model(*weights)
    model.graph.initializer.append(numpy_helper.from_array(np.ones((2, 2)), "W3"))
    nodes = [
        helper.make_node("Gemm", ["X", "B", "C"], ["z"], name="gemm"),
        helper.make_node("Tanh", ["z"], ["a"], name="tanh"),
        helper.make_node("Gemm", ["a", "W2"], ["z2"], transB=1, name="gemm2"),
        helper.make_node("Relu", ["z2"], ["a2"], name="relu"),
        helper.make_node("Gemm", ["a2", "W3"], ["Y"], transB=1, name="gemm3"),
    ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    net = dp.Network.from_onnx(model)
    assert net.activations == ("tanh", "relu") and net.activation == ("tanh", "relu")
    X = inputs(rng, 20, 4, "float64", saturating=False)
    assert_close(net.predict(X), run(model, X)[0], 1e-12)


def test_a_branch_reading_a_hidden_layer_is_refused(weights):
    model = gemm_model(*weights)
    model.graph.node.append(helper.make_node("ArgMax", ["a"], ["index"], name="peek"))
    refused(model, r"node 'peek' \(ArgMax\) reads 'a', which a layer")


def softmax_model(outputs, extra_nodes=(), constants=()):
    """deltaprop's own sigmoid-softmax model, its declared outputs replaced by ``outputs``."""
    net = network("sigmoid", "softmax", "float64", sizes=(5, 7, 3))
    model = dp.onnx.network_model(net.architecture, net.weights, net.biases)
    model.graph.node.extend(extra_nodes)
    model.graph.initializer.extend(numpy_helper.from_array(v, n) for n, v in constants)
    del model.graph.output[:]
    model.graph.output.extend(
        helper.make_tensor_value_info(
            name, TensorProto.INT64 if name == "index" else TensorProto.DOUBLE, None
        )
        for name in outputs
    )
    return model


ONE = ("one", np.ones((1, 1)))
DECLARED_OUTPUTS = {
    "hidden-layer": (
        ["a1"],
        [],
        [],
        r"output 'a1' is what node 'a1' \(Reciprocal\) computes "
        "inside the network, not the network's output 'output'",
    ),
    "pre-activation": (["z2"], [], [], r"output 'z2' is what node 'z2' \(Gemm\) computes"),
    "the-input": (["X"], [], [], r"output 'X' is the graph's input"),
    "a-weight": (["W1"], [], [], r"output 'W1' is a constant"),
    "gather": (
        ["first"],
        [helper.make_node("Gather", ["output", "i"], ["first"], axis=1, name="pick")],
        [("i", np.array([0]))],
        r"output 'first' is what node 'pick' \(Gather\)",
    ),
    "sub": (
        ["rest"],
        [helper.make_node("Sub", ["one", "output"], ["rest"], name="sub")],
        [ONE],
        r"output 'rest' is what node 'sub' \(Sub\)",
    ),
    "concat": (
        ["twice"],
        [helper.make_node("Concat", ["output", "output"], ["twice"], axis=1, name="cat")],
        [],
        r"output 'twice' is what node 'cat' \(Concat\)",
    ),
    "label-only": (
        ["index"],
        [helper.make_node("ArgMax", ["output"], ["index"], axis=1, name="argmax")],
        [],
        r"outputs labels only \('index'\)",
    ),
    "none": ([], [], [], "declares no output"),
}


@pytest.mark.parametrize("case", DECLARED_OUTPUTS)
def test_a_graph_not_outputting_the_network_is_refused(rng, case):
    outputs, nodes, constants, match = DECLARED_OUTPUTS[case]
    model = softmax_model(outputs, nodes, constants)
    if outputs and outputs[0] not in ("X", "W1", "index"):  # onnxruntime runs it, disagrees
        X = inputs(rng, 4, 5, "float64", saturating=False)
        computed = session(model).run(None, {"X": X})[0]
        network_output = session(softmax_model(["output"])).run(None, {"X": X})[0]
        assert computed.shape != network_output.shape or not np.allclose(computed, network_output)
    refused(model, match)


def test_the_network_output_may_be_declared_with_labels_and_aliases(rng):
    nodes = [
        helper.make_node("ArgMax", ["output"], ["index"], axis=1, name="argmax"),
        helper.make_node("Identity", ["output"], ["probabilities"], name="alias"),
        helper.make_node("Reshape", ["output", "shape"], ["variable"], name="reshape"),
    ]
    model = softmax_model(
        ["index", "probabilities", "variable", "output"], nodes, [("shape", np.array([-1, 3]))]
    )
    expected = dp.Network.from_onnx(softmax_model(["output"])).params
    assert dp.Network.from_onnx(model).params.tobytes() == expected.tobytes()
    nodes[2] = helper.make_node("Reshape", ["output", "shape"], ["variable"], name="reshape")
    refused(
        softmax_model(["variable"], nodes, [("shape", np.array([3, -1]))]),
        r"output 'variable' is what node 'reshape' \(Reshape\)",
    )
    nodes[0] = helper.make_node("ArgMax", ["output"], ["index"], axis=0, name="argmax")
    refused(
        softmax_model(["output", "index"], nodes, [("shape", np.array([-1, 3]))]),
        r"output 'index' is what node 'argmax' \(ArgMax\)",
    )


def malformed(model, match):
    with pytest.raises(dp.ModelFormatError, match=match):
        dp.Network.from_onnx(model)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, 1e39], ids=str)
@pytest.mark.parametrize("attribute", ["alpha", "beta"])
def test_a_gemm_scale_that_is_not_finite_is_refused_naming_the_node(weights, attribute, value):
    # An ONNX float attribute is a float32: 1e39 is stored as infinity.
    model = gemm_model(*weights, **{attribute: value})
    malformed(model, rf"node 'gemm' \(Gemm\) has {attribute}=(nan|-?inf), not a finite number")


def test_a_gemm_scale_that_overflows_the_weights_is_refused_naming_the_node(weights):
    W, b = weights
    model = gemm_model(W * 10, b, alpha=1e38, dtype=np.float32)
    malformed(
        model,
        r"node 'gemm' \(Gemm\): alpha=9\.99\d*e\+37 times its weights overflows "
        "float32",
    )


@pytest.mark.parametrize("slope", [1e39, np.nan], ids=str)
def test_a_leaky_relu_slope_that_is_not_finite_is_refused_naming_the_node(weights, slope):
    model = gemm_model(*weights, activation="LeakyRelu")
    model.graph.node[1].attribute.append(helper.make_attribute("alpha", slope))
    malformed(model, r"node 'activation' \(LeakyRelu\) has alpha=(inf|nan), not a finite")


@pytest.mark.parametrize("matmul", [False, True], ids=["gemm", "matmul"])
def test_a_layer_without_units_is_refused_naming_the_node(matmul):
    model = gemm_model(np.zeros((4, 0)), np.zeros(0), matmul=matmul)
    node = "matmul" if matmul else "gemm"
    malformed(model, rf"node '{node}' \((Gemm|MatMul)\) has weights for 0 units of 4 inputs")


# ---------------------------------------------------------------------- damaged files
@pytest.fixture(scope="module")
def model_bytes():
    net = network("relu", "softmax", "float32", sizes=(6, 5, 3))
    return dp.onnx.network_model(net.architecture, net.weights, net.biases).SerializeToString()


def loads_or_refuses(data) -> None:
    try:
        dp.Network.from_onnx(data)
    except dp.ModelFormatError:
        pass


def test_every_truncation_and_many_bit_flips_are_refused_or_read(model_bytes):
    for end in range(len(model_bytes)):
        loads_or_refuses(model_bytes[:end])
    rng = np.random.default_rng(0)
    for _ in range(2000):
        data = bytearray(model_bytes)
        for position in rng.integers(0, len(data), size=rng.integers(1, 4)):
            data[position] ^= 1 << int(rng.integers(0, 8))
        loads_or_refuses(bytes(data))
    for garbage in (b"", b"\x00" * 100, bytes(rng.integers(0, 256, 5000, dtype=np.uint8))):
        loads_or_refuses(garbage)


def test_declared_sizes_are_checked_before_anything_is_allocated(model_bytes):
    model = onnx.load_model_from_string(model_bytes)
    model.graph.initializer[0].dims[:] = [100_000, 100_000]  # 40 GB declared, 120 bytes held
    tracemalloc.start()
    with pytest.raises(dp.ModelFormatError, match=r"declares \[100000, 100000\]"):
        dp.Network.from_onnx(model.SerializeToString())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * len(model_bytes) + 1_000_000
    for dims in ([-1, 6], [5, 6, 1, 1, 1, 1, 1, 1, 1]):
        model.graph.initializer[0].dims[:] = dims
        with pytest.raises(dp.ModelFormatError, match="invalid dimensions"):
            dp.Network.from_onnx(model)


def test_external_data_is_read_from_the_model_directory_only(tmp_path, model_bytes):
    model = onnx.load_model_from_string(model_bytes)
    onnx.save_model(
        model,
        tmp_path / "net.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="net.data",
        size_threshold=0,
    )
    expected = dp.Network.from_onnx(model_bytes).params
    assert dp.Network.from_onnx(tmp_path / "net.onnx").params.tobytes() == expected.tobytes()
    external = onnx.load(tmp_path / "net.onnx", load_external_data=False)
    with pytest.raises(dp.ModelFormatError, match=r"read the model's file"):
        dp.Network.from_onnx(external)
    for location, match in (
        ("../net.data", "not a file in the model's directory"),
        ("/etc/passwd", "not a file in the model's directory"),
    ):
        entry = external.graph.initializer[0].external_data[0]
        assert entry.key == "location"
        entry.value = location
        onnx.save_model(external, tmp_path / "bad.onnx")
        with pytest.raises(dp.ModelFormatError, match=match):
            dp.Network.from_onnx(tmp_path / "bad.onnx")
    (tmp_path / "net.data").write_bytes(b"\0" * 8)  # shorter than its tensors
    with pytest.raises(dp.ModelFormatError, match=r"'net\.data' has 8 bytes"):
        dp.Network.from_onnx(tmp_path / "net.onnx")


@pytest.fixture
def external_model(tmp_path, model_bytes):
    """A model in ``tmp_path/models`` with its weights in ``net.data``, and those weights."""
    (tmp_path / "models").mkdir()
    onnx.save_model(
        onnx.load_model_from_string(model_bytes),
        tmp_path / "models" / "net.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="net.data",
        size_threshold=0,
    )
    return tmp_path / "models" / "net.onnx", dp.Network.from_onnx(model_bytes).params


def test_external_data_is_never_read_through_a_link(tmp_path, external_model):
    path, params = external_model
    data = path.parent / "net.data"
    outside = tmp_path / "secret.data"
    data.rename(outside)
    data.symlink_to(outside)
    with pytest.raises(dp.ModelFormatError, match=r"'net\.data' is a symbolic link"):
        dp.Network.from_onnx(path)
    data.unlink()
    data.symlink_to("net.copy")  # even to a file inside: the link could be swapped
    (path.parent / "net.copy").write_bytes(outside.read_bytes())
    with pytest.raises(dp.ModelFormatError, match="symbolic link"):
        dp.Network.from_onnx(path)
    data.unlink()
    os.link(outside, data)  # another name of a file outside
    with pytest.raises(dp.ModelFormatError, match="hard links"):
        dp.Network.from_onnx(path)
    data.unlink()
    outside.rename(data)
    assert dp.Network.from_onnx(path).params.tobytes() == params.tobytes()


def test_external_data_in_a_linked_directory_is_refused(tmp_path, external_model):
    path, _ = external_model
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        tensor.external_data[0].value = "sub/net.data"
    onnx.save_model(model, path)
    (tmp_path / "elsewhere").mkdir()
    (path.parent / "net.data").rename(tmp_path / "elsewhere" / "net.data")
    (path.parent / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(dp.ModelFormatError, match=r"'sub' is a symbolic link"):
        dp.Network.from_onnx(path)
    (path.parent / "sub").unlink()
    (tmp_path / "elsewhere").rename(path.parent / "sub")  # a real subdirectory: read
    dp.Network.from_onnx(path)


def test_external_data_is_checked_on_what_was_opened_not_on_its_name(
    tmp_path, external_model, monkeypatch
):
    # The race of a name checked, then opened: at the check the name is a file inside the
    # directory, at the open a link out. Replaying it deterministically: every name looks
    # as if it resolved inside; what is opened must be refused all the same.
    path, _ = external_model
    data = path.parent / "net.data"
    data.rename(tmp_path / "secret.data")
    data.symlink_to(tmp_path / "secret.data")
    monkeypatch.setattr(os.path, "realpath", os.path.abspath)
    with pytest.raises(dp.ModelFormatError, match="symbolic link"):
        dp.Network.from_onnx(path)


def test_external_data_that_is_not_a_regular_file_is_refused(external_model):
    path, _ = external_model
    data = path.parent / "net.data"
    data.unlink()
    os.mkfifo(data)  # would block a reader for ever
    with pytest.raises(dp.ModelFormatError, match="not a regular file"):
        dp.Network.from_onnx(path)


def test_a_negative_external_data_offset_is_reported_as_such(external_model):
    path, _ = external_model
    model = onnx.load(path, load_external_data=False)
    model.graph.initializer[0].external_data.add(key="offset", value="-8")
    onnx.save_model(model, path)
    with pytest.raises(dp.ModelFormatError, match=r"external data offset -8 is negative"):
        dp.Network.from_onnx(path)


def test_non_finite_weights_are_refused(model_bytes):
    model = onnx.load_model_from_string(model_bytes)
    values = numpy_helper.to_array(model.graph.initializer[1]).copy()
    values[0] = np.nan
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(values, "b1"))
    with pytest.raises(dp.ModelFormatError, match=r"NaN or infinity"):
        dp.Network.from_onnx(model)


def test_files_that_cannot_be_read(tmp_path):
    with pytest.raises(FileNotFoundError):
        dp.Network.from_onnx(tmp_path / "missing.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(dp.ModelFormatError, match=r"text\.onnx"):
        dp.Network.from_onnx(tmp_path / "text.onnx")


# ------------------------------------------------------------ from scikit-learn, PyTorch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("kind", ["int", "binary", "multilabel", "regressor"])
def test_from_sklearn_predicts_as_the_estimator(rng, kind, activation, dtype):
    estimator, X = fitted_mlp(kind, rng, activation, dtype)
    net = dp.Network.from_sklearn(estimator)
    assert net.dtype == np.dtype(dtype)
    for saturating in (False, True):
        X = inputs(rng, 50, 4, dtype, saturating)
        if kind == "regressor":
            expected = estimator.predict(X).reshape(len(X), -1)
        else:
            expected = estimator.predict_proba(X)
            expected = expected[:, 1:] if kind == "binary" else expected
        assert_close(net.predict(X), expected, TOLERANCE[dtype])
    expected_cost = {"int": "log_likelihood", "regressor": "quadratic"}.get(kind, "cross_entropy")
    assert net.cost_name == expected_cost


def test_from_sklearn_trains_further(rng):
    estimator, X = fitted_mlp("int", rng)
    y = np.searchsorted(estimator.classes_, estimator.predict(X))
    net = dp.Network.from_sklearn(estimator)
    before = net.cost(X, y)
    net.fit(X, y, epochs=5, batch_size=10, optimizer="adam", lr=1e-2)
    assert net.cost(X, y) < before


def test_from_sklearn_refuses_what_it_cannot_map(rng):
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(TypeError, match="got LogisticRegression"):
        dp.Network.from_sklearn(LogisticRegression())
    with pytest.raises(ValueError, match="not fitted"):
        dp.Network.from_sklearn(MLPClassifier())
    X = rng.normal(size=(50, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        poisson = MLPRegressor(hidden_layer_sizes=(4,), loss="poisson", max_iter=5).fit(
            X, np.exp(X[:, 0])
        )
    with pytest.raises(ValueError, match=r"out_activation_ 'exp'.*poisson"):
        dp.Network.from_sklearn(poisson)


def test_from_sklearn_refuses_half_fitted_estimators(rng):
    estimator, _ = fitted_mlp("int", rng)
    estimator.intercepts_ = estimator.intercepts_[:-1]
    with pytest.raises(ValueError, match="3 coefs_ and 2 intercepts_; a fitted MLPClassifier"):
        dp.Network.from_sklearn(estimator)
    estimator, _ = fitted_mlp("int", rng)
    del estimator.out_activation_
    with pytest.raises(ValueError, match="half fitted: it has no out_activation_"):
        dp.Network.from_sklearn(estimator)
    estimator, _ = fitted_mlp("regressor", rng)
    estimator.intercepts_[1] = estimator.intercepts_[1][:2]
    with pytest.raises(
        ValueError,
        match=r"coefs_\[1\] of shape \(6, 5\) and intercepts_\[1\] "
        r"of shape \(2,\)",
    ):
        dp.Network.from_sklearn(estimator)
    estimator, _ = fitted_mlp("int", rng)
    estimator.coefs_[2] = estimator.coefs_[2][:4]
    with pytest.raises(ValueError, match=r"coefs_\[2\].*4 inputs after a layer of 5 units"):
        dp.Network.from_sklearn(estimator)
    estimator, _ = fitted_mlp("int", rng)
    estimator.coefs_[0][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"coefs_\[0\].*NaN or infinity"):
        dp.Network.from_sklearn(estimator)


def test_from_sklearn_refuses_estimators_computing_otherwise(rng):
    class Shifted(MLPRegressor):
        def predict(self, X):
            return super().predict(X) + 1

    X = rng.normal(size=(40, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        shifted = Shifted(hidden_layer_sizes=(4,), max_iter=5).fit(X, X[:, 0])
    with pytest.raises(ValueError, match=r"Shifted replaces MLPRegressor\.predict"):
        dp.Network.from_sklearn(shifted)
    estimator, _ = fitted_mlp("int", rng)
    estimator.predict_proba = lambda X: np.ones((len(X), 3)) / 3
    with pytest.raises(ValueError, match=r"replaces MLPClassifier\.predict_proba"):
        dp.Network.from_sklearn(estimator)


def test_from_torch_reports_bad_layers_by_module():
    nn = torch.nn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: initialising zero-element tensors is a no-op
        empty = nn.Sequential(nn.Linear(3, 0))
    cases = [
        (
            nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(float("nan")), nn.Linear(4, 2)),
            r"module\[1\] \('1': LeakyReLU\): leaky_relu with slope nan, not finite",
        ),
        (empty, r"module\[0\] \('0': Linear\): weights of shape \(0, 3\); a layer has at least"),
        (
            nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)),
            r"module\[1\].*5 inputs after a layer of 4 units",
        ),
    ]
    for module, match in cases:
        with pytest.raises(ValueError, match=match):
            dp.Network.from_torch(module)


@pytest.mark.parametrize(("activation", "output", "dtype"), COMBINATIONS, ids=IDS)
def test_from_torch_predicts_as_the_module(rng, activation, output, dtype):
    module = sequential(activation, output, dtype, bias=activation != "tanh")
    net = dp.Network.from_torch(module)
    assert (net.activation, net.output, net.dtype) == (activation, output, np.dtype(dtype))
    for saturating in (False, True):
        X = inputs(rng, 40, 5, dtype, saturating)
        assert_close(net.predict(X), torch_predict(module, X), TOLERANCE[dtype])


def mixed_sequential(dtype):
    """Every activation once, two leaky ReLUs with their own slopes, a softmax output."""
    nn = torch.nn
    torch.manual_seed(1)
    hidden = [nn.LeakyReLU(0.2), nn.Tanh(), nn.ReLU(), nn.Sigmoid(), nn.LeakyReLU(0.05),
              nn.Identity()]  # fmt: skip
    sizes = [5, 7, 6, 4, 6, 5, 4, 3]
    layers = []
    for n_in, n_out, activation in zip(sizes, sizes[1:], [*hidden, nn.Softmax(dim=1)]):
        layers += [nn.Linear(n_in, n_out), activation]
    return nn.Sequential(*layers).to(getattr(torch, dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_from_torch_takes_an_activation_per_layer(rng, dtype):
    module = mixed_sequential(dtype)
    net = dp.Network.from_torch(module)
    assert net.activations == ("leaky_relu", "tanh", "relu", "sigmoid", "leaky_relu", "identity")
    assert np.float32(net.leaky_slopes[0]) == np.float32(0.2)
    assert np.float32(net.leaky_slopes[4]) == np.float32(0.05)
    X = inputs(rng, 40, 5, dtype, saturating=False)
    assert_close(net.predict(X), torch_predict(module, X), TOLERANCE[dtype])


def test_import_of_a_torch_export_with_an_activation_per_layer(tmp_path, rng):
    module = mixed_sequential("float32").eval()
    X = inputs(rng, 7, 5, "float32", saturating=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing warnings
        torch.onnx.export(module, (torch.from_numpy(X),), tmp_path / "torch.onnx", dynamo=False,
                          input_names=["X"], dynamic_axes={"X": {0: "N"}})  # fmt: skip
    layers = dp.onnx.read(tmp_path / "torch.onnx")
    assert layers.activation == ("leaky_relu", "tanh", "relu", "sigmoid", "leaky_relu", "identity")
    expected = np.float32([0.2, 0.01, 0.01, 0.01, 0.05, 0.01])  # the others: the default
    np.testing.assert_array_equal(np.float32(layers.leaky_slope), expected)
    net = dp.Network.from_onnx(tmp_path / "torch.onnx")
    assert_close(net.predict(X), torch_predict(module, X), TOLERANCE["float32"])


def test_mixed_activations_gradients_match_torch_autograd(rng):
    """BP1-BP4 with each layer's own sigma' against PyTorch's autograd of the same module,
    its cost the batch mean of the log-likelihood."""
    module = mixed_sequential("float64")
    net = dp.Network.from_torch(module)
    X, y = rng.normal(size=(9, 5)), rng.integers(0, 3, size=9)
    _, dW, db = net.gradients(X, y)
    logits = module[:-1](torch.from_numpy(X))  # softmax and its log-likelihood in one
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).backward()
    linears = [child for child in module if isinstance(child, torch.nn.Linear)]
    for l, linear in enumerate(linears):
        assert_close(dW[l], linear.weight.grad.numpy(), 1e-12)
        assert_close(db[l], linear.bias.grad.numpy(), 1e-12)


def test_from_torch_trains_further(rng):
    net = dp.Network.from_torch(sequential("relu", "softmax", "float32"))
    X, y = rng.normal(size=(200, 5)).astype(np.float32), rng.integers(0, 3, 200)
    before = net.cost(X, y)
    net.fit(X, y, epochs=5, batch_size=20, lr=0.1)
    assert net.cost(X, y) < before and net.cost_name == "log_likelihood"


def test_from_torch_refuses_modules_by_name():
    nn = torch.nn
    with pytest.raises(TypeError, match=r"expected a torch\.nn\.Sequential, got Linear"):
        dp.Network.from_torch(nn.Linear(2, 2))
    cases = [
        (
            nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.Linear(4, 2)),
            r"module\[1\] \('1': Dropout\) is not supported",
        ),
        (nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), r"module\[0\].*needs a Linear layer"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Tanh()), r"module\[2\].*needs a Linear"),
        (nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=0)), r"module\[1\].*softmax over dim=0"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU()), r"module\[1\].*relu as the output"),
        (nn.Sequential(nn.Linear(3, 4).half()), r"module\[0\].*dtype float16"),
        (nn.Sequential(), "no Linear layer"),
    ]
    for module, match in cases:
        with pytest.raises(ValueError, match=match):
            dp.Network.from_torch(module)


def test_from_torch_maps_a_reused_module_in_each_place(rng):
    nn = torch.nn
    torch.manual_seed(0)
    sigmoid, tied = nn.Sigmoid(), nn.Linear(4, 4, dtype=torch.float64)
    shared_activation = nn.Sequential(
        nn.Linear(5, 4, dtype=torch.float64), sigmoid, nn.Linear(4, 3, dtype=torch.float64), sigmoid
    )
    tied_layer = nn.Sequential(
        nn.Linear(5, 4, dtype=torch.float64),
        nn.Tanh(),
        tied,
        nn.Tanh(),
        tied,
        nn.Tanh(),
        nn.Linear(4, 2, dtype=torch.float64),
    )
    X = inputs(rng, 30, 5, "float64", saturating=False)
    for module, sizes, output in (
        (shared_activation, (5, 4, 3), "sigmoid"),
        (tied_layer, (5, 4, 4, 4, 2), "identity"),
    ):
        net = dp.Network.from_torch(module)
        assert (net.sizes, net.output) == (sizes, output)
        assert_close(net.predict(X), torch_predict(module, X), 1e-12)


def test_from_torch_refuses_hooks_and_replaced_forwards():
    nn = torch.nn

    def doubled(module, args, result):
        return 2 * result

    def shifted(module, args):
        return (args[0] + 1,)

    def model():
        return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))

    module = model()
    module[1].register_forward_hook(doubled)
    with pytest.raises(
        ValueError,
        match=r"module\[1\] \('1': ReLU\) has a forward hook "
        r"\(.*doubled\)",
    ):
        dp.Network.from_torch(module)
    module = model()
    module.register_forward_pre_hook(shifted)
    with pytest.raises(
        ValueError,
        match=r"module \(Sequential\) has a forward pre-hook "
        r"\(.*shifted\)",
    ):
        dp.Network.from_torch(module)
    handle = nn.modules.module.register_module_forward_hook(doubled)
    try:
        with pytest.raises(ValueError, match=r"a global forward hook \(.*doubled\)"):
            dp.Network.from_torch(model())
    finally:
        handle.remove()
    module = model()
    module[0].forward = lambda x: x @ module[0].weight.T
    with pytest.raises(ValueError, match=r"module\[0\].*forward is replaced on the instance"):
        dp.Network.from_torch(module)

    class Reversed(nn.Sequential):
        def forward(self, x):
            for layer in reversed(self):
                x = layer(x)
            return x

    with pytest.raises(ValueError, match=r"Reversed overrides Sequential\.forward"):
        dp.Network.from_torch(Reversed(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3)))
    dp.Network.from_torch(model())  # nothing left behind


# ---------------------------------------------------------------------------- command line
def test_the_command_line_exports_a_model_file(tmp_path, rng, capsys):
    from deltaprop import cli

    net = network("leaky_relu", "softmax", "float64", leaky_slope=0.05)
    net.save(tmp_path / "model.npz")
    assert cli.main(["export", str(tmp_path / "model.npz"), str(tmp_path / "model.onnx")]) == 0
    assert "model.onnx (ONNX opset 9)" in capsys.readouterr().out
    X = inputs(rng, 7, 5, "float64", saturating=False)
    assert_close(run(tmp_path / "model.onnx", X)[0], net.predict(X), 1e-12)
    assert (
        cli.main(
            ["export", str(tmp_path / "model.npz"), str(tmp_path / "13.onnx"), "--opset", "13"]
        )
        == 0
    )
    assert onnx.load(tmp_path / "13.onnx").opset_import[0].version == 13


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.npz", "out.onnx"], "missing.npz"),
        (["model.npz", "out.onnx", "--opset", "8"], "--opset: expected an integer >= 9"),
        (["model.npz", "out.onnx", "--opset", "x"], "--opset: invalid int value"),
        (["model.npz", "out.onnx", "--opset", "10000"], "opset: expected an integer in"),
        (["model.npz", "."], "Is a directory"),
    ],
)
def test_command_line_errors_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    from deltaprop import cli

    monkeypatch.chdir(tmp_path)
    network("relu", "identity", "float32").save(tmp_path / "model.npz")
    assert cli.main(["export", *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("deltaprop: error: ") and error.count("\n") == 1 and message in error


def test_the_guide_interop_example_does_what_it_says(tmp_path, monkeypatch):
    import pathlib
    import re

    guide = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide" / "interop.md"
    (block,) = re.findall(r"```python\n(.*?)```", guide.read_text("utf-8"), re.S)[:1]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of short fits, exporter notices
        exec(compile(block, "docs/guide/interop.md", "exec"), namespace)
    X, net = namespace["X"], namespace["net"]
    assert_close(namespace["probabilities"], net.predict(X[:5]), 1e-12)
    assert namespace["same"].params.tobytes() == net.params.tobytes()
    assert namespace["same"].cost_name == "log_likelihood"
    assert namespace["tuned"].evaluate(X, namespace["y"]) > 0.95
    expected = torch_predict(namespace["module"], X)
    assert_close(namespace["from_torch"].predict(X), expected, 1e-12)
    assert namespace["regression"].cost_name == "quadratic"
    assert (tmp_path / "classifier.onnx").exists()


def test_a_model_over_max_bytes_is_refused_before_it_is_parsed(tmp_path, model_bytes):
    path = tmp_path / "net.onnx"
    path.write_bytes(model_bytes)
    size = len(model_bytes)
    for source in (path, model_bytes, bytearray(model_bytes)):
        with pytest.raises(dp.ModelFormatError, match=rf"{size} bytes, over max_bytes={size - 1}"):
            dp.Network.from_onnx(source, max_bytes=size - 1)
        dp.Network.from_onnx(source, max_bytes=size)
    assert dp.onnx.MAX_BYTES == 1 << 30 and dp.onnx.PEAK_FACTOR == 3
    with pytest.raises(TypeError, match="max_bytes"):
        dp.onnx.read(path, max_bytes="1")


def test_external_data_counts_towards_max_bytes(external_model):
    path, params = external_model
    model_size = path.stat().st_size
    data_size = (path.parent / "net.data").stat().st_size
    with pytest.raises(dp.ModelFormatError, match="external data, over what max_bytes leaves"):
        dp.Network.from_onnx(path, max_bytes=model_size + data_size - 1)
    net = dp.Network.from_onnx(path, max_bytes=model_size + data_size)
    assert net.params.tobytes() == params.tobytes()


def test_weights_held_as_repeated_floats_are_read_without_a_list(model_bytes):
    model = onnx.load_model_from_string(model_bytes)
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor).ravel().tolist()
        tensor.ClearField("raw_data")
        tensor.float_data.extend(values)
    expected = dp.Network.from_onnx(model_bytes).params
    assert dp.Network.from_onnx(model).params.tobytes() == expected.tobytes()


def test_repeated_floats_are_read_in_bounded_memory():
    net = network("relu", "identity", "float32", sizes=(1000, 500, 2))
    model = dp.onnx.network_model(net.architecture, net.weights, net.biases)
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor).ravel().tolist()
        tensor.ClearField("raw_data")
        tensor.float_data.extend(values)
    del values
    size = model.ByteSize()
    tracemalloc.start()
    try:
        dp.Network.from_onnx(model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < dp.onnx.PEAK_FACTOR * size  # a list of Python floats would take 8x


# ---------------------------------------------------------------------------- input scaling
def standardized(dtype, rng, sizes=(4, 6, 3)):
    """A network trained with standardize=True on inputs far from mean 0 and std 1."""
    X = rng.normal([5.0, -300.0, 0.0, 2e3], [2.0, 40.0, 1e-2, 5.0], size=(90, sizes[0]))
    net = network("tanh", "softmax", dtype, sizes=sizes)
    net.fit(X, rng.integers(0, sizes[-1], 90), standardize=True, epochs=2)
    return net, X.astype(dtype)


def test_the_scaling_is_exported_before_the_first_gemm(tmp_path, rng, dtype):
    net, X = standardized(dtype, rng)
    net.to_onnx(tmp_path / "net.onnx")
    model = onnx.load(tmp_path / "net.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert [node.op_type for node in model.graph.node[:3]] == ["Sub", "Div", "Gemm"]
    (output,) = run(tmp_path / "net.onnx", X)
    assert_close(output, net.predict(X), TOLERANCE[dtype])
    back = dp.Network.from_onnx(tmp_path / "net.onnx")  # bit for bit, its scaling too
    assert back.params.tobytes() == net.params.tobytes()
    np.testing.assert_array_equal(back.input_scale, net.input_scale.astype(dtype))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


def test_the_estimators_export_their_scaling(tmp_path, rng):
    X = rng.normal(50.0, 20.0, size=(80, 4))
    classifier = DeltapropClassifier((5,), max_iter=3, random_state=0, standardize=True)
    regressor = DeltapropRegressor((5,), max_iter=3, random_state=0, standardize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 3 epochs
        classifier.fit(X, rng.integers(0, 3, 80))
        regressor.fit(X, X @ [0.1, 0.2, 0.0, -0.1])
    assert classifier.network_.input_mean is not None
    classifier.to_onnx(tmp_path / "c.onnx")
    label, probabilities = run(tmp_path / "c.onnx", X)
    np.testing.assert_array_equal(label, classifier.predict(X))
    assert_close(probabilities, classifier.predict_proba(X), 1e-12)
    regressor.to_onnx(tmp_path / "r.onnx")
    assert_close(run(tmp_path / "r.onnx", X)[0][:, 0], regressor.predict(X), 1e-12)


def with_scaling_nodes(net, nodes, constants):
    """The network's ONNX model (without scaling) with ``nodes`` from X to 'scaled' first."""
    model = dp.onnx.network_model(net.architecture, *net.layer_copies())
    model.graph.node[0].input[0] = "scaled"
    for position, node in enumerate(nodes):
        model.graph.node.insert(position, node)
    for name, value in constants.items():
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return model


SCALING_FORMS = {
    "sub-mul": lambda m, s: (
        [
            helper.make_node("Sub", ["X", "m"], ["c"]),
            helper.make_node("Mul", ["c", "r"], ["scaled"]),
        ],
        {"m": m, "r": 1 / s},
    ),
    "mul-add": lambda m, s: (
        [
            helper.make_node("Mul", ["r", "X"], ["p"]),
            helper.make_node("Add", ["p", "b"], ["scaled"]),
        ],
        {"r": 1 / s, "b": -m / s},
    ),
    "div-row": lambda m, s: ([helper.make_node("Div", ["X", "s"], ["scaled"])], {"s": s[None, :]}),
    "sub-scalar": lambda m, s: ([helper.make_node("Sub", ["X", "m"], ["scaled"])], {"m": m[:1]}),
}


@pytest.mark.parametrize("form", SCALING_FORMS)
def test_scalings_written_in_other_ways_are_read(rng, form):
    net = network("tanh", "softmax", "float64", sizes=(4, 5, 3))
    mean, scale = rng.normal(size=4), rng.uniform(0.5, 2.0, size=4)
    nodes, constants = SCALING_FORMS[form](mean, scale)
    model = with_scaling_nodes(net, nodes, constants)
    onnx.checker.check_model(model, full_check=True)
    back = dp.Network.from_onnx(model)
    X = rng.normal(size=(10, 4))
    (expected,) = session(model).run(None, {"X": X})
    assert_close(back.predict(X), expected, 1e-12)
    if form == "sub-scalar":
        np.testing.assert_array_equal(back.input_mean, np.full(4, mean[0]))
        np.testing.assert_array_equal(back.input_scale, np.ones(4))


@pytest.mark.parametrize(
    ("constants", "match"),
    [({"m": np.zeros(4), "r": np.array([1.0, 0.0, 1.0, 1.0])}, "infinity"),
     ({"m": np.zeros(4), "r": -np.ones(4)}, "scale > 0"),
     ({"m": np.zeros(4), "r": np.ones((2, 2))}, "not per input"),
     ({"m": np.zeros(3), "r": np.ones(3)}, "of the 4 inputs")],
    ids=["zero", "negative", "not-per-input", "wrong-length"],
)  # fmt: skip
def test_a_scaling_that_is_not_one_is_refused(rng, constants, match):
    net = network("tanh", "softmax", "float64", sizes=(4, 5, 3))
    nodes = [
        helper.make_node("Sub", ["X", "m"], ["c"], name="centre"),
        helper.make_node("Mul", ["c", "r"], ["scaled"], name="scale"),
    ]
    with pytest.raises(dp.onnx.UnsupportedGraphError, match=match):
        dp.Network.from_onnx(with_scaling_nodes(net, nodes, constants))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_import_of_a_skl2onnx_pipeline_with_a_standard_scaler(rng, dtype):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    estimator, X = fitted_mlp("int", rng, dtype=dtype)
    X = (X * 30 + 100).astype(dtype)
    pipeline = make_pipeline(StandardScaler(), estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        pipeline.fit(X, LABELS["int"](rng, len(X)))
    options = {id(estimator): {"zipmap": False}}
    net = dp.Network.from_onnx(skl2onnx.to_onnx(pipeline, X[:1], options=options))
    np.testing.assert_allclose(net.input_mean, pipeline[0].mean_, rtol=1e-6)
    assert_close(net.predict(X), pipeline.predict_proba(X), TOLERANCE[dtype] * 10)


# ---------------------------------------------------------------- skl2onnx's converters
PIPELINE_INPUTS = [("float64", "float64"), ("float32", "float64"), ("float32", "float32"),
                   ("float64", "float32")]  # fmt: skip


@pytest.mark.parametrize(("input_dtype", "dtype"), PIPELINE_INPUTS)
@pytest.mark.parametrize("kind", ["int", "str", "binary"])
def test_a_pipeline_ending_in_a_classifier_converts_with_skl2onnx(rng, kind, input_dtype, dtype):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from deltaprop.sklearn import register_skl2onnx

    register_skl2onnx()
    X = rng.normal(20.0, 5.0, size=(90, 4)).astype(input_dtype)
    classifier = DeltapropClassifier((6,), max_iter=5, random_state=0, dtype=dtype)
    pipeline = Pipeline([("scale", StandardScaler()), ("net", classifier)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        pipeline.fit(X, LABELS[kind](rng, 90))
    # No option: skl2onnx's ZipMap takes float32 only, so float64 pipelines give tensors.
    zipmap = input_dtype == "float32"
    model = skl2onnx.to_onnx(pipeline, X[:1])
    onnx.checker.check_model(model, full_check=True)
    runner = session(model)
    names = [output.name for output in runner.get_outputs()]
    assert names == (
        ["output_label", "output_probability"] if zipmap else ["label", "probabilities"]
    )
    label, probabilities = runner.run(None, {runner.get_inputs()[0].name: X})
    if zipmap:
        probabilities = [[row[c] for c in pipeline.classes_] for row in probabilities]
    np.testing.assert_array_equal(label, pipeline.predict(X))
    tolerance = 1e-12 if input_dtype == dtype == "float64" else 1e-5
    assert_close(np.asarray(probabilities), pipeline.predict_proba(X), tolerance)


@pytest.mark.parametrize("zipmap", [False, "columns"])
def test_a_float64_pipeline_keeps_the_zipmap_option_it_is_given(rng, zipmap):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from deltaprop.sklearn import register_skl2onnx

    register_skl2onnx()
    X = rng.normal(20.0, 5.0, size=(60, 4))
    pipeline = make_pipeline(StandardScaler(), DeltapropClassifier((6,), max_iter=5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        pipeline.fit(X, LABELS["str"](rng, 60))
    runner = session(skl2onnx.to_onnx(pipeline, X[:1], options={"zipmap": zipmap}))
    label, *probabilities = runner.run(None, {runner.get_inputs()[0].name: X})
    np.testing.assert_array_equal(label, pipeline.predict(X))
    columns = np.column_stack(probabilities) if zipmap == "columns" else probabilities[0]
    assert columns.dtype == np.float64
    assert_close(columns, pipeline.predict_proba(X), 1e-12)


def test_a_pipeline_ending_in_a_standardizing_regressor_converts_with_skl2onnx(rng):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    from deltaprop.sklearn import register_skl2onnx

    register_skl2onnx()
    X = rng.normal(3.0, 2.0, size=(70, 5))
    regressor = DeltapropRegressor((4,), max_iter=5, random_state=0, standardize=True)
    pipeline = make_pipeline(PCA(3), regressor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        pipeline.fit(X, np.c_[X[:, 0], X[:, 1] - X[:, 2]])
    assert regressor.network_.input_scale is not None
    model = skl2onnx.to_onnx(pipeline, X[:1])
    runner = session(model)
    (variable,) = runner.run(None, {runner.get_inputs()[0].name: X})
    assert_close(variable, pipeline.predict(X), 1e-12)
