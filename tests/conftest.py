"""Shared fixtures and helpers: seeded data, random networks, the reference oracle."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import deltaprop as dp

HIDDEN_ACTIVATIONS = dp.ACTIVATIONS
# Every (output activation, cost) pairing the library accepts.
VALID_OUTPUT_COSTS = (
    ("sigmoid", "quadratic"),
    ("sigmoid", "cross_entropy"),
    ("softmax", "quadratic"),
    ("softmax", "log_likelihood"),
    ("identity", "quadratic"),
)
# Every (hidden activation, output activation, cost) the core computes, and their test ids.
COMBINATIONS = [
    (hidden, output, cost)
    for hidden, (output, cost) in itertools.product(HIDDEN_ACTIVATIONS, VALID_OUTPUT_COSTS)
]
COMBINATION_IDS = ["-".join(c) for c in COMBINATIONS]
# Networks with an activation per hidden layer: every activation in each, rotated so that
# each one sits at every depth, with every (output activation, cost) pairing.
MIXED_SIZES = (4, 5, 3, 6, 4, 5)  # input and five hidden layers; the output's size is added
MIXED_SLOPES = (0.1, 0.3, 0.05, 0.2, 0.5)
MIXED = [
    (HIDDEN_ACTIVATIONS[rotation:] + HIDDEN_ACTIVATIONS[:rotation], output, cost)
    for rotation in range(len(HIDDEN_ACTIVATIONS))
    for output, cost in VALID_OUTPUT_COSTS
]
MIXED_IDS = [f"{hidden[0]}-first-{output}-{cost}" for hidden, output, cost in MIXED]
# Relative tolerances against the float64 reference, per dtype of the core.
RTOL = {"float64": 1e-10, "float32": 1e-3}

# Under AddressSanitizer (README, "Development builds") a process reserves terabytes of
# address space for its shadow memory, so a child limited to 1 GiB cannot start.
under_address_space_limit = pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer cannot run under a limit of the address space",
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(params=["float64", "float32"], ids=["f64", "f32"])
def dtype(request) -> str:
    return request.param


def assert_close(actual, expected, rtol: float) -> None:
    """allclose with an absolute floor scaled to the array, so near-zero entries of a
    gradient are judged against the gradient's size, not against themselves; values
    below the smallest normal number of `actual`'s dtype cannot keep relative precision."""
    actual, expected = np.asarray(actual), np.asarray(expected, dtype=np.float64)
    scale = float(np.abs(expected).max(initial=0.0))
    atol = max(rtol * scale, float(np.finfo(actual.dtype).tiny))
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol, atol=atol)


def random_sizes(rng: np.random.Generator, output: str) -> list[int]:
    """Depth 1-4 weight layers, widths 1-8 (softmax needs 2 outputs)."""
    depth = int(rng.integers(1, 5))
    sizes = [int(n) for n in rng.integers(1, 9, size=depth + 1)]
    if output == "softmax":
        sizes[-1] = max(sizes[-1], 2)
    return sizes


def random_targets(rng: np.random.Generator, cost: str, n_samples: int, n_out: int):
    """Targets valid for the cost: soft probabilities in [0, 1] for the log costs."""
    if cost == "log_likelihood":
        Y = rng.random((n_samples, n_out))
        return Y / Y.sum(axis=1, keepdims=True)
    if cost == "cross_entropy":
        return rng.random((n_samples, n_out))
    return rng.normal(size=(n_samples, n_out))


def mixed_network(hidden, output: str, cost: str, dtype: str = "float64", seed: int = 0):
    """A network of `MIXED_SIZES` with the hidden activations `hidden` and slopes
    `MIXED_SLOPES`, and random data for it: (net, X, Y)."""
    rng = np.random.default_rng(seed)
    sizes = [*MIXED_SIZES, 3]
    net = dp.Network(
        sizes,
        activation=list(hidden),
        leaky_slope=list(MIXED_SLOPES),
        output=output,
        cost=cost,
        dtype=dtype,
        seed=seed,
    )
    X = rng.normal(size=(5, sizes[0]))
    return net, X, random_targets(rng, cost, 5, sizes[-1])


def reference_call(function, net: dp.Network, X, Y, **options):
    """A pure-Python reference function on the network's parameters and the data, as
    float64 lists."""
    return function(
        [W.astype(np.float64).tolist() for W in net.weights],
        [b.astype(np.float64).tolist() for b in net.biases],
        np.asarray(X, dtype=np.float64).tolist(),
        np.asarray(Y, dtype=np.float64).tolist(),
        activation=net.activation,
        output=net.output,
        cost=net.cost_name,
        leaky_slope=net.leaky_slope,
        **options,
    )


def reference_gradients(net: dp.Network, X, Y):
    """The pure-Python oracle's (cost, dW, db), in float64."""
    return reference_call(dp.reference.gradients, net, X, Y)


def softmax_problem(n_samples: int = 12, dtype: str = "float64"):
    """A small tanh/softmax network and random data for it: (net, X, class labels)."""
    rng = np.random.default_rng(11)
    net = dp.Network(
        [5, 6, 3], activation="tanh", output="softmax", cost="log_likelihood", dtype=dtype, seed=11
    )
    return net, rng.normal(size=(n_samples, 5)), rng.integers(0, 3, size=n_samples)


def restore_default_sigint() -> None:
    """Give a child process SIGINT's default disposition (a ``preexec_fn``).

    A run started with SIGINT ignored (under nohup, or from a background job) hands that on
    to its children, which then install no KeyboardInterrupt handler (and mpiexec forwards
    nothing); the Ctrl-C tests need the default.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# mpiexec: the mpich wheel's, beside this Python, else one on PATH; and mpi4py.
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401

    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False
HAVE_MPI = MPIEXEC is not None and HAVE_MPI4PY
MPI_MISSING = "needs mpi4py and mpiexec: pip install 'deltaprop[mpi]'"
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason=MPI_MISSING)
