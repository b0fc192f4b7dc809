"""The core's cost and gradients against the pure-Python reference and against
central finite differences, for every activation and (output, cost) pairing."""

from __future__ import annotations

import os

import numpy as np
import pytest

import deltaprop as dp
from conftest import (
    COMBINATION_IDS,
    COMBINATIONS,
    MIXED,
    MIXED_IDS,
    RTOL,
    VALID_OUTPUT_COSTS,
    assert_close,
    mixed_network,
    random_sizes,
    random_targets,
    reference_gradients,
)


def random_problem(seed: int, hidden: str, output: str, cost: str, dtype: str = "float64"):
    rng = np.random.default_rng(seed)
    sizes = random_sizes(rng, output)
    net = dp.Network(
        sizes,
        activation=hidden,
        output=output,
        cost=cost,
        dtype=dtype,
        seed=seed,
        leaky_slope=0.1,
    )
    n_samples = int(rng.integers(1, 8))
    X = rng.normal(size=(n_samples, sizes[0]))
    return net, X, random_targets(rng, cost, n_samples, sizes[-1])


def flat(dW, db) -> np.ndarray:
    return np.concatenate([np.concatenate([np.ravel(W), np.ravel(b)]) for W, b in zip(dW, db)])


def central_differences(net, X, Y, step=1e-6) -> np.ndarray:
    """dC/dp by (C(p + h) - C(p - h)) / 2h, entry by entry of the flat parameters."""
    params = net.params
    numeric = np.empty_like(params)
    for i in range(params.size):
        original = params[i]
        params[i] = original + step
        cost_plus = net.cost(X, Y)
        params[i] = original - step
        cost_minus = net.cost(X, Y)
        params[i] = original
        numeric[i] = (cost_plus - cost_minus) / (2 * step)
    return numeric


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("hidden", "output", "cost"), COMBINATIONS, ids=COMBINATION_IDS)
def test_gradients_match_reference(hidden, output, cost, seed, dtype):
    net, X, Y = random_problem(seed, hidden, output, cost, dtype)
    cost_value, dW, db = net.gradients(X, Y)
    # The reference sees exactly what the core sees: parameters and data in the
    # core's precision, then computes in float64.
    ref_cost, ref_dW, ref_db = reference_gradients(net, X.astype(dtype), Y.astype(dtype))
    rtol = RTOL[dtype]
    assert cost_value == pytest.approx(ref_cost, rel=rtol)
    for l in range(len(dW)):
        assert dW[l].dtype == np.dtype(dtype) and dW[l].shape == net.weights[l].shape
        assert db[l].dtype == np.dtype(dtype) and db[l].shape == net.biases[l].shape
        assert_close(dW[l], ref_dW[l], rtol)
        assert_close(db[l], ref_db[l], rtol)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("hidden", "output", "cost"), COMBINATIONS, ids=COMBINATION_IDS)
def test_gradients_match_finite_differences(hidden, output, cost, seed):
    net, X, Y = random_problem(100 + seed, hidden, output, cost)
    _, dW, db = net.gradients(X, Y)
    assert_close(flat(dW, db), central_differences(net, X, Y), 1e-6)


@pytest.mark.parametrize(("hidden", "output", "cost"), MIXED, ids=MIXED_IDS)
def test_gradients_of_mixed_activations_match_reference(hidden, output, cost, dtype):
    net, X, Y = mixed_network(hidden, output, cost, dtype, seed=1)
    assert net.activations == hidden and net.leaky_slopes == (0.1, 0.3, 0.05, 0.2, 0.5)
    X, Y = X.astype(dtype), Y.astype(dtype)
    cost_value, dW, db = net.gradients(X, Y)
    ref_cost, ref_dW, ref_db = reference_gradients(net, X, Y)
    assert cost_value == pytest.approx(ref_cost, rel=RTOL[dtype])
    assert_close(flat(dW, db), flat(ref_dW, ref_db), RTOL[dtype])


@pytest.mark.parametrize(("hidden", "output", "cost"), MIXED, ids=MIXED_IDS)
def test_gradients_of_mixed_activations_match_finite_differences(hidden, output, cost):
    net, X, Y = mixed_network(hidden, output, cost, seed=3)
    _, dW, db = net.gradients(X, Y)
    assert_close(flat(dW, db), central_differences(net, X, Y), 1e-6)


def test_each_hidden_layer_takes_its_own_activation():
    """Swapping two hidden layers' activations, or changing one layer's slope, changes the
    gradient: the core applies neither one activation nor one slope to every layer."""
    hidden = ("relu", "tanh", "leaky_relu", "sigmoid", "identity")
    net, X, Y = mixed_network(hidden, "identity", "quadratic")

    def gradient(activation, leaky_slope):
        twin = dp.Network.from_params(
            net.weights, net.biases, activation=activation, leaky_slope=leaky_slope,
            output="identity", cost="quadratic",
        )  # fmt: skip
        return flat(*twin.gradients(X, Y)[1:])

    g = gradient(hidden, net.leaky_slopes)
    np.testing.assert_array_equal(g, flat(*net.gradients(X, Y)[1:]))
    swapped = gradient(("tanh", "relu", *hidden[2:]), net.leaky_slopes)
    other_slope = gradient(hidden, [0.1, 0.3, 0.9, 0.2, 0.5])  # leaky_relu's layer only
    for other in (swapped, other_slope):
        assert np.abs(other - g).max() > 1e-3 * np.abs(g).max()


def saturated_network(output: str, cost: str, dtype: str = "float64") -> dp.Network:
    """[3, 4, 2]: sigmoid hidden units and outputs driven to |z| >= 30."""
    net = dp.Network([3, 4, 2], activation="sigmoid", output=output, cost=cost, dtype=dtype, seed=0)
    net.weights[0][...] = 0.1
    net.biases[0][...] = [40.0, -40.0, 35.0, -35.0]
    net.weights[1][...] = [[20.0, -20.0, 10.0, 0.0], [-20.0, 20.0, -10.0, 0.0]]
    net.biases[1][...] = [5.0, -5.0]
    return net


@pytest.mark.parametrize(
    ("output", "cost"), VALID_OUTPUT_COSTS, ids=["-".join(p) for p in VALID_OUTPUT_COSTS]
)
def test_saturated_gradients_match_reference(output, cost, dtype):
    net = saturated_network(output, cost, dtype)
    X = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]])
    Y = np.array([[0.0, 1.0], [1.0, 0.0]])  # the wrong answers: the saturated, slow case
    value, dW, db = net.gradients(X, Y)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in dW + db)
    ref_cost, ref_dW, ref_db = reference_gradients(net, X, Y)
    assert value == pytest.approx(ref_cost, rel=RTOL[dtype])
    for l in range(2):
        assert_close(dW[l], ref_dW[l], RTOL[dtype])
        assert_close(db[l], ref_db[l], RTOL[dtype])


def test_cross_entropy_output_error_is_a_minus_y_when_saturated():
    net = saturated_network("sigmoid", "cross_entropy")
    X = np.array([[1.0, -1.0, 0.5]])
    Y = np.array([[0.0, 1.0]])
    a = net.predict(X)
    assert 1 - a[0, 0] < 1e-14 and a[0, 1] < 1e-14  # saturated outputs
    value, _, db = net.gradients(X, Y)
    # BP1 + BP3: db^L = delta^L = a - y, with no 0/0 from a(1 - a).
    np.testing.assert_array_equal(db[-1], (a - Y)[0])
    # z^L = +-(20*1 - 20*0 + 10*1 + 5) = +-35: cost = softplus(35) + softplus(35).
    assert value == pytest.approx(2 * (35 + np.log1p(np.exp(-35))), rel=1e-12)


def test_log_likelihood_is_finite_for_huge_logits():
    net = dp.Network.from_params(
        [np.array([[1000.0], [0.0]])], [np.zeros(2)], output="softmax", cost="log_likelihood"
    )
    value, _, db = net.gradients(np.array([[1.0]]), np.array([1]))
    assert value == pytest.approx(1000.0, rel=1e-12)
    np.testing.assert_allclose(db[0], [1.0, -1.0], atol=1e-300)


def test_hand_worked_two_layer_identity_example():
    # x = 1, y = 0, W1 = 2, b1 = 0, W2 = 3, b2 = 1, identity everywhere:
    # z1 = a1 = 2, z2 = a2 = 7, C = 7^2 / 2 = 24.5;
    # BP1 delta2 = a2 - y = 7; BP4 dW2 = delta2 a1 = 14; BP3 db2 = 7;
    # BP2 delta1 = W2 delta2 = 21; dW1 = delta1 x = 21; db1 = 21.
    net = dp.Network.from_params(
        [np.array([[2.0]]), np.array([[3.0]])],
        [np.array([0.0]), np.array([1.0])],
        activation="identity",
        output="identity",
        cost="quadratic",
    )
    value, dW, db = net.gradients(np.array([[1.0]]), np.array([[0.0]]))
    assert value == 24.5
    assert [W.item() for W in dW] == [21.0, 14.0]
    assert [b.item() for b in db] == [21.0, 7.0]


def test_hand_worked_sigmoid_example():
    # x = 0, W = 1, b = 0, y = 1: z = 0, a = 1/2, C = (1/2 - 1)^2 / 2 = 1/8;
    # sigma'(0) = 1/4, so delta = (a - y) sigma'(z) = -1/8, dW = delta x = 0, db = -1/8.
    net = dp.Network.from_params([np.array([[1.0]])], [np.array([0.0])])
    value, dW, db = net.gradients(np.array([[0.0]]), np.array([[1.0]]))
    assert (value, dW[0].item(), db[0].item()) == (0.125, 0.0, -0.125)


def test_gradients_are_batch_means():
    net, X, Y = random_problem(7, "tanh", "softmax", "log_likelihood")
    X = np.vstack([X, X[:1]])
    Y = np.vstack([Y, Y[:1]])
    cost_all, dW_all, db_all = net.gradients(X, Y)
    per_sample = [net.gradients(X[i : i + 1], Y[i : i + 1]) for i in range(len(X))]
    assert cost_all == pytest.approx(np.mean([c for c, _, _ in per_sample]), rel=1e-12)
    for l in range(len(dW_all)):
        assert_close(dW_all[l], np.mean([dW[l] for _, dW, _ in per_sample], axis=0), 1e-12)
        assert_close(db_all[l], np.mean([db[l] for _, _, db in per_sample], axis=0), 1e-12)


def test_batches_larger_than_a_chunk_agree_with_pieces():
    """cost() and predict() walk big inputs in chunks (of 16 MB of workspace: 232 rows
    for this wide network); the answer must not depend on it."""
    rng = np.random.default_rng(3)
    net = dp.Network(
        [5, 3000, 3], activation="relu", output="softmax", cost="log_likelihood", seed=3
    )
    X = rng.normal(size=(2500, 5))
    labels = rng.integers(0, 3, size=2500)
    out = net.predict(X)
    for rows in (slice(0, 1), slice(231, 233), slice(2490, 2500)):
        np.testing.assert_allclose(out[rows], net.predict(X[rows]), rtol=1e-12)
    pieces = [net.cost(X[i : i + 500], labels[i : i + 500]) for i in range(0, 2500, 500)]
    assert net.cost(X, labels) == pytest.approx(np.mean(pieces), rel=1e-12)


# ------------------------------------------------------------------ full-batch objective
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_full_batch_objective_is_the_mean_of_the_rows_gradients_across_chunks(weighted):
    """A network wide enough that its 1,500 rows take several chunks of workspace: the
    objective equals the weighted mean of per-row costs and gradients, plus the L2 and L1
    terms of the weights only."""
    rng = np.random.default_rng(3)
    net = dp.Network(
        [300, 2048, 4], activation="tanh", output="softmax", cost="log_likelihood", seed=3
    )
    X, y = rng.normal(size=(1500, 300)), rng.integers(0, 4, 1500)
    weights = rng.uniform(0.0, 2.0, 1500) if weighted else np.ones(1500)
    lmbda, l1 = 3.0, 0.5
    cost, gradient = net.objective(
        X, y, sample_weight=weights if weighted else None, lmbda=lmbda, l1=l1
    )
    expected_cost, expected = 0.0, np.zeros_like(net.params)
    for start in range(0, 1500, 100):
        part = slice(start, start + 100)
        share = weights[part].sum() / weights.sum()
        batch_cost, dW, db = _weighted_gradients(net, X[part], y[part], weights[part])
        expected_cost += share * batch_cost
        expected += share * np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(dW, db)])
    mask = np.concatenate(
        [
            np.concatenate([np.ones(W.size), np.zeros(b.size)])
            for W, b in zip(net.weights, net.biases)
        ]
    ).astype(bool)
    W = net.params[mask]
    expected_cost += lmbda / (2 * 1500) * (W @ W) + l1 / 1500 * np.abs(W).sum()
    expected[mask] += lmbda / 1500 * W + l1 / 1500 * np.sign(W)
    assert_close(cost, expected_cost, 1e-10)
    assert_close(gradient, expected, 1e-9)


def _weighted_gradients(net, X, y, weights):
    """Weighted mean cost and gradients of a batch, from per-row gradients."""
    total, dW, db = 0.0, None, None
    for x_row, y_row, w in zip(X, y, weights):
        cost, row_dW, row_db = net.gradients(x_row[None], y_row[None])
        share = w / weights.sum()
        total += share * cost
        dW = (
            [share * d for d in row_dW]
            if dW is None
            else [a + share * d for a, d in zip(dW, row_dW)]
        )
        db = (
            [share * d for d in row_db]
            if db is None
            else [a + share * d for a, d in zip(db, row_db)]
        )
    return total, dW, db


def test_full_batch_objective_matches_central_differences():
    rng = np.random.default_rng(4)
    net = dp.Network(
        [5, 7, 3], activation="sigmoid", output="sigmoid", cost="cross_entropy", seed=4
    )
    X, Y = rng.normal(size=(40, 5)), rng.uniform(size=(40, 3))
    weights = rng.uniform(0.5, 1.5, 40)
    _, gradient = net.objective(X, Y, sample_weight=weights, lmbda=2.0, l1=0.0)
    h, params = 1e-6, net.params.copy()
    for k in rng.choice(net.params.size, 12, replace=False):
        net.params[k] = params[k] + h
        up = net.objective(X, Y, sample_weight=weights, lmbda=2.0)[0]
        net.params[k] = params[k] - h
        down = net.objective(X, Y, sample_weight=weights, lmbda=2.0)[0]
        net.params[k] = params[k]
        assert abs((up - down) / (2 * h) - gradient[k]) < 1e-6 * max(1.0, abs(gradient[k]))


def resident_bytes() -> int:
    """The process's resident memory (Linux's /proc; the core's buffers are not traced)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_a_large_batch_leaves_no_workspace_behind():
    # 30000 rows through 210 units: one pass would keep 3 workspaces of 30000 x 210
    # doubles (150 MB) for the network's life; chunks keep one chunk's (about 16 MB).
    net = dp.Network(
        [50, 100, 100, 10], activation="relu", output="softmax", cost="log_likelihood", seed=0
    )
    rng = np.random.default_rng(0)
    X, y = rng.random((30000, 50)), rng.integers(0, 10, 30000)
    before = resident_bytes()
    cost, dW, db = net.gradients(X, y)
    del dW, db
    assert resident_bytes() - before < 48 << 20
    assert np.isfinite(cost)


def test_gradients_of_a_batch_larger_than_a_chunk_are_its_average(rng):
    net = dp.Network([3, 4, 2], activation="tanh", output="identity", seed=1)
    X, Y = rng.normal(size=(20000, 3)), rng.normal(size=(20000, 2))
    cost, dW, db = net.gradients(X, Y)
    halves = [net.gradients(X[part], Y[part]) for part in (slice(0, 10000), slice(10000, None))]
    assert_close(cost, np.mean([c for c, _, _ in halves]), 1e-12)
    for l in range(2):
        assert_close(dW[l], (halves[0][1][l] + halves[1][1][l]) / 2, 1e-12)
        assert_close(db[l], (halves[0][2][l] + halves[1][2][l]) / 2, 1e-12)
