"""Mini-batch SGD in the core against the reference, and training on the shipped digits."""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp
from conftest import VALID_OUTPUT_COSTS, assert_close, random_targets, reference_call


def reference_epoch(net: dp.Network, X, Y, **options):
    return reference_call(dp.reference.sgd_epoch, net, X, Y, **options)


def small_problem(output: str, cost: str, hidden: str = "sigmoid", n_samples: int = 23):
    rng = np.random.default_rng(5)
    net = dp.Network([4, 6, 5, 3], activation=hidden, output=output, cost=cost, seed=5)
    X = rng.normal(size=(n_samples, 4))
    return net, X, random_targets(rng, cost, n_samples, 3)


def assert_params_equal(net: dp.Network, weights, biases, rtol: float) -> None:
    for l in range(len(weights)):
        assert_close(net.weights[l], weights[l], rtol)
        assert_close(net.biases[l], biases[l], rtol)


@pytest.mark.parametrize("hidden", ["sigmoid", "relu", "tanh"])
@pytest.mark.parametrize(
    ("output", "cost"), VALID_OUTPUT_COSTS, ids=["-".join(p) for p in VALID_OUTPUT_COSTS]
)
def test_one_epoch_in_order_with_l2_matches_reference(output, cost, hidden):
    net, X, Y = small_problem(output, cost, hidden)
    # 23 samples in batches of 5: the last batch has 3 rows.
    expected = reference_epoch(net, X, Y, batch_size=5, lr=0.3, lmbda=2.0, n=len(X))
    history = net.fit(X, Y, epochs=1, batch_size=5, lr=0.3, lmbda=2.0, shuffle=False)
    assert_params_equal(net, *expected, 1e-10)
    assert len(history["cost"]) == 1 and np.isfinite(history["cost"][0])


def test_shuffled_epoch_visits_rows_in_the_seeded_permutation():
    net, X, Y = small_problem("softmax", "log_likelihood", "relu")
    order = np.random.default_rng(42).permutation(len(X))
    expected = reference_epoch(net, X[order], Y[order], batch_size=4, lr=0.5, lmbda=1.0, n=len(X))
    net.fit(X, Y, epochs=1, batch_size=4, lr=0.5, lmbda=1.0, shuffle=True, seed=42)
    assert_params_equal(net, *expected, 1e-10)


def test_float32_epoch_tracks_the_float64_reference():
    net64, X, Y = small_problem("sigmoid", "cross_entropy")
    net32 = dp.Network.from_params(
        net64.weights, net64.biases, output="sigmoid", cost="cross_entropy", dtype="float32"
    )
    expected = reference_epoch(net64, X, Y, batch_size=5, lr=0.3)
    net32.fit(X, Y, epochs=1, batch_size=5, lr=0.3, shuffle=False)
    assert net32.dtype == np.float32
    assert_params_equal(net32, *expected, 1e-3)


def test_sgd_step_is_one_batch_of_the_reference_epoch():
    net, X, Y = small_problem("identity", "quadratic", "leaky_relu", n_samples=6)
    expected = reference_epoch(net, X, Y, batch_size=6, lr=0.1, lmbda=0.5, n=60)
    cost_before = net.cost(X, Y)
    returned = net.sgd_step(X, Y, lr=0.1, lmbda=0.5, n=60)
    assert returned == pytest.approx(cost_before, rel=1e-12)
    assert_params_equal(net, *expected, 1e-10)


def test_l2_decays_weights_but_not_biases():
    # With identity output, quadratic cost and targets equal to the outputs, the
    # gradient is zero: only the L2 decay (1 - lr*lmbda/n) acts.
    net = dp.Network([3, 2], activation="identity", output="identity", seed=1)
    X = np.random.default_rng(1).normal(size=(4, 3))
    Y = net.predict(X)
    W, b = net.weights[0].copy(), net.biases[0].copy()
    net.fit(X, Y, epochs=1, batch_size=4, lr=0.5, lmbda=2.0, shuffle=False)
    np.testing.assert_allclose(net.weights[0], W * (1 - 0.5 * 2.0 / 4), rtol=1e-14)
    np.testing.assert_array_equal(net.biases[0], b)


def test_training_is_reproducible_and_seed_dependent():
    X, y = dp.datasets.load_digits()
    X, y = X[:300], y[:300]

    def train(seed):
        net = dp.Network([64, 16, 10], output="softmax", cost="log_likelihood", seed=0)
        net.fit(X, y, epochs=2, batch_size=8, lr=0.2, seed=seed)
        return net.params.copy()

    np.testing.assert_array_equal(train(1), train(1))
    assert not np.array_equal(train(1), train(2))


def test_fit_history_records_validation_metrics():
    net, X, Y = small_problem("softmax", "log_likelihood")
    labels = Y.argmax(axis=1)
    history = net.fit(X, labels, epochs=3, batch_size=5, lr=0.1, validation_data=(X, labels))
    assert set(history) == {"cost", "val_cost", "val_accuracy", "lr", "time"}
    assert all(len(values) == 3 for values in history.values())
    assert history["val_cost"][-1] == pytest.approx(net.cost(X, labels), rel=1e-12)
    assert history["val_accuracy"][-1] == net.evaluate(X, labels)


def test_zero_epochs_changes_nothing():
    net, X, Y = small_problem("sigmoid", "quadratic")
    before = net.params.copy()
    assert net.fit(X, Y, epochs=0) == {"cost": [], "lr": [], "time": []}
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize(
    ("activation", "output", "cost", "lr"),
    [
        ("sigmoid", "sigmoid", "quadratic", 3.0),
        ("sigmoid", "sigmoid", "cross_entropy", 0.5),
        ("relu", "softmax", "log_likelihood", 0.1),
    ],
)
def test_digits_reach_95_percent_on_held_out_data(activation, output, cost, lr, dtype):
    X, y = dp.datasets.load_digits(dtype=dtype)
    (X_train, y_train), (X_test, y_test) = dp.datasets.train_test_split(X, y, seed=0)
    net = dp.Network(
        [64, 30, 10], activation=activation, output=output, cost=cost, dtype=dtype, seed=0
    )
    net.fit(X_train, y_train, epochs=30, batch_size=10, lr=lr, seed=0)
    assert net.evaluate(X_test, y_test) >= 0.95
