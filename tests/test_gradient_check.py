"""Network.gradient_check: small errors for the core's right gradients (every activation,
cost and dtype, L1 and L2 included), a wrong gradient named where it is wrong."""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp
from conftest import (
    COMBINATIONS,
    MIXED,
    MIXED_IDS,
    RTOL,
    assert_close,
    mixed_network,
    random_targets,
)


def problem(hidden, output, cost, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    net = dp.Network([5, 4, 3], activation=hidden, output=output, cost=cost, dtype=dtype, seed=seed)
    X = rng.normal(size=(6, 5))
    return net, X, random_targets(rng, cost, 6, 3)


@pytest.mark.parametrize(("hidden", "output", "cost"), COMBINATIONS, ids="-".join)
def test_the_cores_gradients_pass_in_float64(hidden, output, cost):
    net, X, Y = problem(hidden, output, cost)
    check = net.gradient_check(X, Y, lmbda=0.3, l1=0.1)
    assert len(check.weights) == len(check.biases) == 2
    # ReLU's kink: a step across z = 0 for one row costs accuracy only where it falls.
    assert check.max_error < (1e-4 if hidden in ("relu", "leaky_relu") else 1e-6), check


def test_a_float32_network_is_checked_against_float64():
    net, X, Y = problem("tanh", "softmax", "log_likelihood", dtype="float32")
    check = net.gradient_check(X, Y)
    assert 1e-9 < check.max_error < 1e-2


def test_a_wrong_gradient_is_named(monkeypatch):
    net, X, Y = problem("sigmoid", "sigmoid", "cross_entropy")
    objective = dp.Network.objective

    def wrong(self, *args, **kwargs):  # the copy's objective stays right
        value, gradient = objective(self, *args, **kwargs)
        if self is net:
            gradient = gradient.copy()
            gradient[net.weights[0].size + 2] *= 1.5  # b^1, row 2
        return value, gradient

    monkeypatch.setattr(dp.Network, "objective", wrong)
    check = net.gradient_check(X, Y)
    assert check.worst["layer"] == 1 and check.worst["kind"] == "b"
    assert check.worst["index"] == (2,)
    assert check.worst["relative_error"] == pytest.approx(1 / 3, rel=1e-3)
    assert check.biases[0] == check.max_error and check.weights[1] < 1e-6
    assert "b^1[2]" in repr(check)


def test_a_sample_of_entries_and_the_step():
    net, X, Y = problem("tanh", "identity", "quadratic")
    check = net.gradient_check(X, Y, entries=5, eps=1e-4)
    checked = [e for e in check.weights + check.biases if not np.isnan(e)]
    assert 1 <= len(checked) <= 4 and max(checked) < 1e-6


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (dict(eps=0.0), ValueError),
        (dict(eps=2.0), ValueError),
        (dict(eps="small"), TypeError),
        (dict(entries=0), ValueError),
        (dict(lmbda=-1.0), ValueError),
    ],
)
def test_bad_arguments_are_refused(options, error):
    net, X, Y = problem("tanh", "identity", "quadratic")
    with pytest.raises(error):
        net.gradient_check(X, Y, **options)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("hidden", "output", "cost"), COMBINATIONS, ids="-".join)
def test_a_batchs_layers_and_deltas_are_the_references(hidden, output, cost, dtype):
    rng = np.random.default_rng(7)
    net = dp.Network([5, 6, 4, 3], activation=hidden, output=output, cost=cost, dtype=dtype, seed=7)
    X = rng.normal(size=(4, 5)).astype(dtype)
    Y = random_targets(rng, cost, 4, 3).astype(dtype)
    zs, activations = net.forward(X, return_layers=True)
    deltas = net.deltas(X, Y)
    np.testing.assert_array_equal(activations[-1], net.predict(X))
    names = dict(activation=hidden, output=output, leaky_slope=net.leaky_slope)
    weights = [W.astype(np.float64).tolist() for W in net.weights]
    biases = [b.astype(np.float64).tolist() for b in net.biases]
    rtol = RTOL[dtype]
    for i, (x, y) in enumerate(zip(X.astype(np.float64).tolist(), Y.astype(np.float64).tolist())):
        ref_zs, ref_activations = dp.reference.layers(weights, biases, x, **names)
        ref_deltas = dp.reference.deltas(weights, biases, x, y, cost=cost, **names)
        for l in range(3):
            assert zs[l].shape == activations[l].shape == deltas[l].shape == (4, net.sizes[l + 1])
            assert_close(zs[l][i], ref_zs[l], rtol)
            assert_close(activations[l][i], ref_activations[l], rtol)
            assert_close(deltas[l][i], ref_deltas[l], rtol)
    # BP3: the gradient of b^l is the rows' mean of δ^l.
    _, _, db = net.gradients(X, Y)
    for l in range(3):
        assert_close(db[l], deltas[l].mean(axis=0), rtol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("hidden", "output", "cost"), MIXED, ids=MIXED_IDS)
def test_mixed_activations_layers_and_deltas_are_the_references(hidden, output, cost, dtype):
    net, X, Y = mixed_network(hidden, output, cost, dtype, seed=5)
    X, Y = X.astype(dtype), Y.astype(dtype)
    zs, activations = net.forward(X, return_layers=True)
    deltas = net.deltas(X, Y)
    names = dict(activation=list(hidden), output=output, leaky_slope=list(net.leaky_slopes))
    weights = [W.astype(np.float64).tolist() for W in net.weights]
    biases = [b.astype(np.float64).tolist() for b in net.biases]
    for i, (x, y) in enumerate(zip(X.astype(np.float64).tolist(), Y.astype(np.float64).tolist())):
        ref_zs, ref_activations = dp.reference.layers(weights, biases, x, **names)
        ref_deltas = dp.reference.deltas(weights, biases, x, y, cost=cost, **names)
        for l in range(len(net.sizes) - 1):
            assert_close(zs[l][i], ref_zs[l], RTOL[dtype])
            assert_close(activations[l][i], ref_activations[l], RTOL[dtype])
            assert_close(deltas[l][i], ref_deltas[l], RTOL[dtype])


def test_a_mixed_network_passes_the_gradient_check():
    net, X, Y = mixed_network(("tanh", "sigmoid", "identity", "relu", "leaky_relu"), "softmax",
                              "log_likelihood")  # fmt: skip
    assert net.gradient_check(X, Y, lmbda=0.3, l1=0.1).max_error < 1e-4


def test_deltas_refuse_bad_targets():
    net = dp.Network([3, 2], output="softmax", cost="log_likelihood")
    with pytest.raises(ValueError, match="Y"):
        net.deltas(np.zeros((2, 3)), [0, 5])
