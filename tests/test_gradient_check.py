"""Network.gradient_check: small errors for the core's right gradients (every activation,
cost and dtype, L1 and L2 included), a wrong gradient named where it is wrong."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import deltaprop as dp
from conftest import HIDDEN_ACTIVATIONS, VALID_OUTPUT_COSTS, random_targets

COMBINATIONS = [(h, *oc) for h, oc in itertools.product(HIDDEN_ACTIVATIONS, VALID_OUTPUT_COSTS)]


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
