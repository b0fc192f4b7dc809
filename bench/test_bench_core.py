"""Speed of deltaprop against a hand-written NumPy MLP and the pure-Python reference.

Two configurations, each in two benchmark groups:

* ``<config>-gradient``: the batch-averaged gradients of one mini-batch;
* ``<config>-epoch``: one epoch of mini-batch SGD over `EPOCH_ROWS` samples.

Every benchmark asserts what it timed: deltaprop and NumPy must agree with each other on the
same batch or the same epoch (same start, same row order), and the reference with deltaprop.
All three are given the same inputs, already in the network's dtype, and one-hot targets.

The data are random and Fashion-MNIST-shaped: 60000 images of 28 x 28 uint8 pixels scaled to
[0, 1] as pixel / 255, and labels 0..9, from a fixed seed. The cost of a dense MLP does not depend
on the values, and nothing has to be downloaded.

The reference needs seconds for what deltaprop does in milliseconds, so it is timed on a few
rows only; its samples/s are then the estimate for the full batch or epoch, and its
``extra_info`` says ``extrapolated=True`` with the estimated full-size time.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import numpy_mlp
import pytest

import deltaprop as dp
from deltaprop import reference

SEED = 0  # of the networks' initialisation and of the epoch's row order
DATA_SEED = 20_240_601
N_IMAGES, N_PIXELS, N_CLASSES = 60_000, 28 * 28, 10
EPOCH_ROWS = 10_000  # samples per timed epoch (a sixth of Fashion-MNIST's training set)
EPOCH_ROUNDS = 5
REFERENCE_ROUNDS = 3
SMOKE_REFERENCE_ROWS = 2  # rows the reference gets under --benchmark-disable
# Largest |difference| allowed, relative to the largest |value| of the layer compared.
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...]
    activation: str
    output: str
    cost: str
    dtype: str
    init: str
    batch_size: int
    lr: float
    lmbda: float
    reference_gradient_rows: int  # rows of the benchmarked batch the reference is timed on
    reference_epoch_rows: int  # rows of the epoch the reference is timed on

    @property
    def id(self) -> str:
        parts = [*map(str, self.sizes), self.activation, self.output, self.cost]
        return "-".join([*parts, f"b{self.batch_size}", self.dtype])

    @property
    def names(self) -> dict[str, str]:
        return {"activation": self.activation, "output": self.output, "cost": self.cost}


CONFIGS = [
    # Nielsen's network.py / network2.py setting.
    Config((784, 30, 10), "sigmoid", "sigmoid", "quadratic", "float64", "normal_scaled",
           batch_size=10, lr=3.0, lmbda=5.0, reference_gradient_rows=10,
           reference_epoch_rows=100),
    # A wider, deeper, modern setting.
    Config((784, 256, 128, 10), "relu", "softmax", "log_likelihood", "float32", "he",
           batch_size=128, lr=0.1, lmbda=5.0, reference_gradient_rows=16,
           reference_epoch_rows=32),
]  # fmt: skip


# No conftest.py here: tests/ imports its own with `from conftest import ...`, which would find
# this folder's instead when both folders run in one session.
@pytest.fixture(scope="session")
def fashion_like() -> tuple[np.ndarray, np.ndarray]:
    """pixels : uint8 ndarray of shape (60000, 784); labels : int64 ndarray of shape (60000,)."""
    rng = np.random.default_rng(DATA_SEED)
    pixels = rng.integers(0, 256, size=(N_IMAGES, N_PIXELS), dtype=np.uint8)
    labels = rng.integers(0, N_CLASSES, size=N_IMAGES)
    return pixels, labels


@pytest.fixture(scope="session")
def training_rows(fashion_like):
    """``training_rows(n, dtype) -> (X, Y)``: the first n images as inputs and one-hot targets.

    X : ndarray of shape (n, 784), C-contiguous, read-only, in `dtype`, values in [0, 1]
    Y : ndarray of shape (n, 10), one-hot, read-only, in `dtype`

    Cached, so that every benchmark of a dtype sees the very same arrays.
    """
    pixels, labels = fashion_like

    @functools.cache
    def rows(n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        X = pixels[:n].astype(dtype) / np.array(255, dtype=dtype)
        Y = np.eye(N_CLASSES, dtype=dtype)[labels[:n]]
        X.flags.writeable = False
        Y.flags.writeable = False
        return X, Y

    return rows


def cases(kind: str) -> list:
    """One parameter per configuration, in the benchmark group ``<config>-<kind>``."""
    return [
        pytest.param(config, id=config.id, marks=pytest.mark.benchmark(group=f"{config.id}-{kind}"))
        for config in CONFIGS
    ]


def make_network(config: Config) -> dp.Network:
    return dp.Network(
        list(config.sizes), dtype=config.dtype, init=config.init, seed=SEED, **config.names
    )


def copy_params(net: dp.Network) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [W.copy() for W in net.weights], [b.copy() for b in net.biases]


def as_lists(net: dp.Network) -> tuple[list, list]:
    """The parameters in the reference's layout: nested lists of Python floats."""
    return [W.tolist() for W in net.weights], [b.tolist() for b in net.biases]


def assert_layers_close(actual, expected, dtype: str, what: str) -> None:
    assert len(actual) == len(expected), what
    for l, (a, e) in enumerate(zip(actual, expected)):
        e = np.asarray(e, dtype=np.float64)
        atol = TOLERANCE[dtype] * np.abs(e).max()
        np.testing.assert_allclose(np.asarray(a, dtype=np.float64), e, rtol=0, atol=atol,
                                   err_msg=f"{what}[{l}]")  # fmt: skip


def record(benchmark, config: Config, rows: int, full_rows: int) -> None:
    """Put samples/s into extra_info; timing `rows` of `full_rows` marks it extrapolated."""
    info = benchmark.extra_info
    info.update(dtype=config.dtype, batch_size=config.batch_size, rows_timed=rows)
    if rows != full_rows:
        info.update(extrapolated=True, extrapolated_to_rows=full_rows)
    if benchmark.enabled:
        samples_per_s = rows / benchmark.stats.stats.median
        info["samples_per_s"] = samples_per_s
        if rows != full_rows:
            info["extrapolated_median_s"] = full_rows / samples_per_s


def reference_rows(benchmark, rows: int) -> int:
    return SMOKE_REFERENCE_ROWS if benchmark.disabled else rows


# ---------------------------------------------------------------------- gradient of one batch
@pytest.mark.parametrize("config", cases("gradient"))
def test_gradient_deltaprop(benchmark, config, training_rows):
    net = make_network(config)
    X, Y = training_rows(config.batch_size, config.dtype)
    cost, dW, db = benchmark(net.gradients, X, Y)

    expected_cost, expected_dW, expected_db = numpy_mlp.gradients(
        net.weights, net.biases, X, Y, **config.names
    )
    assert cost == pytest.approx(expected_cost, rel=TOLERANCE[config.dtype])
    assert_layers_close(dW, expected_dW, config.dtype, "dW")
    assert_layers_close(db, expected_db, config.dtype, "db")
    benchmark.extra_info["blas_threads"] = dp.get_num_threads()
    record(benchmark, config, config.batch_size, config.batch_size)


@pytest.mark.parametrize("config", cases("gradient"))
def test_gradient_numpy(benchmark, config, training_rows):
    net = make_network(config)
    weights, biases = copy_params(net)
    X, Y = training_rows(config.batch_size, config.dtype)
    cost, dW, db = benchmark(numpy_mlp.gradients, weights, biases, X, Y, **config.names)

    assert all(g.dtype == np.dtype(config.dtype) for g in dW + db)
    expected_cost, expected_dW, expected_db = net.gradients(X, Y)
    assert cost == pytest.approx(expected_cost, rel=TOLERANCE[config.dtype])
    assert_layers_close(dW, expected_dW, config.dtype, "dW")
    assert_layers_close(db, expected_db, config.dtype, "db")
    record(benchmark, config, config.batch_size, config.batch_size)


@pytest.mark.parametrize("config", cases("gradient"))
def test_gradient_reference(benchmark, config, training_rows):
    net = make_network(config)
    rows = reference_rows(benchmark, config.reference_gradient_rows)
    X, Y = training_rows(config.batch_size, config.dtype)
    X, Y = X[:rows], Y[:rows]
    weights, biases = as_lists(net)
    cost, dW, db = benchmark.pedantic(
        reference.gradients,
        args=(weights, biases, X.tolist(), Y.tolist()),
        kwargs=config.names,
        rounds=REFERENCE_ROUNDS,
    )

    expected_cost, expected_dW, expected_db = net.gradients(X, Y)
    assert cost == pytest.approx(expected_cost, rel=TOLERANCE[config.dtype])
    assert_layers_close(dW, expected_dW, config.dtype, "dW")
    assert_layers_close(db, expected_db, config.dtype, "db")
    record(benchmark, config, rows, config.batch_size)


# ---------------------------------------------------------------------- one training epoch
def epoch_order() -> np.ndarray:
    """The row order `Network.fit(..., shuffle=True, seed=SEED)` draws for its first epoch."""
    return np.random.default_rng(SEED).permutation(EPOCH_ROWS)


def sgd_kwargs(config: Config) -> dict:
    return {"batch_size": config.batch_size, "lr": config.lr, "lmbda": config.lmbda}


@pytest.mark.parametrize("config", cases("epoch"))
def test_epoch_deltaprop(benchmark, config, training_rows):
    net = make_network(config)
    initial = net.params.copy()
    X, Y = training_rows(EPOCH_ROWS, config.dtype)

    def restart():
        net.params[...] = initial

    history = benchmark.pedantic(
        net.fit,
        args=(X, Y),
        kwargs={"epochs": 1, "shuffle": True, "seed": SEED, **sgd_kwargs(config)},
        setup=restart,
        rounds=EPOCH_ROUNDS,
        warmup_rounds=1,
    )

    assert np.isfinite(history["cost"][0])
    assert not np.array_equal(net.params, initial)
    weights, biases = copy_params(make_network(config))
    expected_cost = numpy_mlp.sgd_epoch(
        weights, biases, X, Y, epoch_order(), n=EPOCH_ROWS, **sgd_kwargs(config), **config.names
    )
    assert history["cost"][0] == pytest.approx(expected_cost, rel=TOLERANCE[config.dtype])
    assert_layers_close(net.weights, weights, config.dtype, "weights")
    assert_layers_close(net.biases, biases, config.dtype, "biases")
    benchmark.extra_info["blas_threads"] = dp.get_num_threads()
    record(benchmark, config, EPOCH_ROWS, EPOCH_ROWS)


@pytest.mark.parametrize("config", cases("epoch"))
def test_epoch_numpy(benchmark, config, training_rows):
    net = make_network(config)
    X, Y = training_rows(EPOCH_ROWS, config.dtype)
    order = epoch_order()
    trained = {}

    def restart():
        trained["weights"], trained["biases"] = copy_params(net)
        args = (trained["weights"], trained["biases"], X, Y, order)
        return args, {"n": EPOCH_ROWS, **sgd_kwargs(config), **config.names}

    cost = benchmark.pedantic(
        numpy_mlp.sgd_epoch, setup=restart, rounds=EPOCH_ROUNDS, warmup_rounds=1
    )

    assert np.isfinite(cost)
    assert not np.array_equal(trained["weights"][0], net.weights[0])
    history = net.fit(X, Y, epochs=1, shuffle=True, seed=SEED, **sgd_kwargs(config))
    assert cost == pytest.approx(history["cost"][0], rel=TOLERANCE[config.dtype])
    assert_layers_close(trained["weights"], net.weights, config.dtype, "weights")
    assert_layers_close(trained["biases"], net.biases, config.dtype, "biases")
    record(benchmark, config, EPOCH_ROWS, EPOCH_ROWS)


@pytest.mark.parametrize("config", cases("epoch"))
def test_epoch_reference(benchmark, config, training_rows):
    net = make_network(config)
    rows = reference_rows(benchmark, config.reference_epoch_rows)
    X, Y = training_rows(EPOCH_ROWS, config.dtype)
    # The first rows the shuffled epoch visits, in that order; the decay uses the full epoch's n.
    visited = epoch_order()[:rows]
    X, Y = X[visited], Y[visited]
    weights, biases = as_lists(net)
    weights, biases = benchmark.pedantic(
        reference.sgd_epoch,
        args=(weights, biases, X.tolist(), Y.tolist()),
        kwargs={"n": EPOCH_ROWS, **sgd_kwargs(config), **config.names},
        rounds=REFERENCE_ROUNDS,
    )

    for start in range(0, rows, config.batch_size):
        batch = slice(start, start + config.batch_size)
        net.sgd_step(X[batch], Y[batch], lr=config.lr, lmbda=config.lmbda, n=EPOCH_ROWS)
    assert_layers_close(weights, net.weights, config.dtype, "weights")
    assert_layers_close(biases, net.biases, config.dtype, "biases")
    record(benchmark, config, rows, EPOCH_ROWS)
