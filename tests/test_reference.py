"""Tests of deltaprop.reference, the pure-Python backpropagation oracle.

The reference is checked against a network worked by hand, against central
finite differences of its own cost, against independent NumPy formulas, and
at saturated outputs where naive formulas overflow or take log(0).
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest

from deltaprop import reference

HIDDEN_ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]
OUTPUT_COST_PAIRS = [
    ("sigmoid", "quadratic"),
    ("softmax", "quadratic"),
    ("identity", "quadratic"),
    ("sigmoid", "cross_entropy"),
    ("softmax", "log_likelihood"),
]
LEAKY_SLOPE = 0.1


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def numpy_layer_zs(weights, biases, X, activation, output, leaky_slope=LEAKY_SLOPE):
    """Independent NumPy forward pass; returns (list of Z per layer, A^L).

    Z has shape (m, n_out) per layer; rows are samples. ``activation`` and
    ``leaky_slope`` are one value or a list of one per hidden layer.
    """
    n_hidden = len(weights) - 1
    names = activation if isinstance(activation, list) else [activation] * n_hidden
    slopes = leaky_slope if isinstance(leaky_slope, list) else [leaky_slope] * n_hidden
    hidden = {
        "sigmoid": lambda z, _: 1.0 / (1.0 + np.exp(-z)),
        "tanh": lambda z, _: np.tanh(z),
        "relu": lambda z, _: np.where(z > 0, z, 0.0),
        "leaky_relu": lambda z, slope: np.where(z > 0, z, slope * z),
        "identity": lambda z, _: z,
    }

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    outputs = {
        "sigmoid": lambda z: hidden["sigmoid"](z, None),
        "identity": lambda z: z,
        "softmax": softmax,
    }
    a = np.asarray(X, dtype=float)
    zs = []
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = a @ np.asarray(w, dtype=float).T + np.asarray(b, dtype=float)
        zs.append(z)
        with np.errstate(over="ignore"):  # naive sigmoid: exp(-z) = inf gives 0
            a = outputs[output](z) if l == n_hidden else hidden[names[l]](z, slopes[l])
    return zs, a


def random_problem(rng, output, cost, *, min_width=1, depth=None):
    """Random network (depth 1-4 unless given, widths 1-8) and batch (1-7 samples)."""
    depth = int(rng.integers(1, 5)) if depth is None else depth
    widths = [int(w) for w in rng.integers(min_width, 9, size=depth + 1)]
    if output == "softmax":
        widths[-1] = max(widths[-1], 2)
    weights = [
        (rng.normal(size=(n_out, n_in)) / math.sqrt(n_in)).tolist()
        for n_in, n_out in zip(widths[:-1], widths[1:])
    ]
    biases = [rng.normal(scale=0.5, size=n_out).tolist() for n_out in widths[1:]]
    m = int(rng.integers(1, 8))
    X = rng.normal(size=(m, widths[0])).tolist()
    n_out = widths[-1]
    if cost == "quadratic":
        Y = rng.normal(size=(m, n_out)).tolist()
    elif cost == "cross_entropy":
        Y = rng.uniform(size=(m, n_out)).tolist()
    else:
        # log_likelihood: one-hot rows, and general non-negative rows whose sum
        # is not 1 (the general BP1 form must stay exact for those too).
        Y = []
        for i in range(m):
            if i % 2 == 0:
                row = [0.0] * n_out
                row[int(rng.integers(n_out))] = 1.0
            else:
                row = rng.uniform(size=n_out).tolist()
            Y.append(row)
    return weights, biases, X, Y


def hidden_zs_near_zero(weights, biases, X, activation, output, margin=1e-3):
    """True if some hidden z lies within margin of the relu kink at 0."""
    zs, _ = numpy_layer_zs(weights, biases, X, activation, output)
    return any(np.any(np.abs(z) < margin) for z in zs[:-1])


def finite_difference_gradients(weights, biases, X, Y, h=1e-6, **names):
    """Central differences of reference.cost for every weight and bias."""
    weights = copy.deepcopy(weights)
    biases = copy.deepcopy(biases)

    def central_difference(container, index):
        original = container[index]
        container[index] = original + h
        cost_plus = reference.cost(weights, biases, X, Y, **names)
        step_plus = container[index]
        container[index] = original - h
        cost_minus = reference.cost(weights, biases, X, Y, **names)
        step_minus = container[index]
        container[index] = original
        return (cost_plus - cost_minus) / (step_plus - step_minus)

    dW = [
        [[central_difference(row, k) for k in range(len(row))] for row in layer]
        for layer in weights
    ]
    db = [[central_difference(layer, j) for j in range(len(layer))] for layer in biases]
    return dW, db


def flatten(dW, db):
    """All gradient entries as one NumPy vector."""
    parts = [np.ravel(np.asarray(layer, dtype=float)) for layer in dW]
    parts += [np.asarray(layer, dtype=float) for layer in db]
    return np.concatenate(parts)


# ---------------------------------------------------------------------------
# 1. Worked by hand
# ---------------------------------------------------------------------------


def test_hand_worked_2_2_1_network():
    # Network 2-2-1, sigmoid hidden, identity output, quadratic cost.
    weights = [[[1.0, -0.5], [0.5, 0.25]], [[2.0, -4.0]]]
    biases = [[0.0, -1.0], [0.5]]
    x, y = [1.0, 2.0], [1.0]
    names = dict(activation="sigmoid", output="identity")
    # Layer 1: z^1 = [1*1 - 0.5*2 + 0, 0.5*1 + 0.25*2 - 1] = [0, 0]
    #          a^1 = sigmoid(0) = [0.5, 0.5],  sigma'(0) = 0.5 * 0.5 = 0.25
    # Truncating after layer 1 with a sigmoid output exposes a^1.
    assert reference.forward(
        weights[:1], biases[:1], x, activation="sigmoid", output="sigmoid"
    ) == [0.5, 0.5]
    # Layer 2: z^2 = 2*0.5 - 4*0.5 + 0.5 = -0.5,  a^2 = z^2 = -0.5
    assert reference.forward(weights, biases, x, **names) == pytest.approx([-0.5], abs=1e-12)
    # C = 0.5 * (a^2 - y)^2 = 0.5 * (-1.5)^2 = 1.125
    # BP1: delta^2 = (a^2 - y) * 1 = -1.5
    # BP3: db^2 = [-1.5];  BP4: dW^2 = delta^2 * a^1 = [[-0.75, -0.75]]
    # BP2: delta^1_k = w^2_0k * delta^2 * sigma'(z^1_k)
    #               = [2 * -1.5 * 0.25, -4 * -1.5 * 0.25] = [-0.75, 1.5]
    # BP3: db^1 = [-0.75, 1.5]
    # BP4: dW^1_jk = delta^1_j * x_k = [[-0.75, -1.5], [1.5, 3.0]]
    c, dW, db = reference.gradients(weights, biases, [x], [y], cost="quadratic", **names)
    assert c == pytest.approx(1.125, abs=1e-12)
    assert reference.cost(weights, biases, [x], [y], cost="quadratic", **names) == pytest.approx(
        1.125, abs=1e-12
    )
    assert db[1] == pytest.approx([-1.5], abs=1e-12)
    assert dW[1][0] == pytest.approx([-0.75, -0.75], abs=1e-12)
    assert db[0] == pytest.approx([-0.75, 1.5], abs=1e-12)
    assert dW[0][0] == pytest.approx([-0.75, -1.5], abs=1e-12)
    assert dW[0][1] == pytest.approx([1.5, 3.0], abs=1e-12)


def test_hand_worked_sigmoid_output_quadratic_and_cross_entropy():
    # 1-1 network with z = 0.5*2 - 1 = 0, a = 0.5, target y = 1.
    weights, biases, X, Y = [[[0.5]]], [[-1.0]], [[2.0]], [[1.0]]
    names = dict(activation="identity", output="sigmoid")
    # Quadratic: C = 0.5 * 0.25 = 0.125, delta = (0.5 - 1) * 0.25 = -0.125,
    # dW = delta * x = -0.25.
    c, dW, db = reference.gradients(weights, biases, X, Y, cost="quadratic", **names)
    assert (c, dW, db) == (
        pytest.approx(0.125, abs=1e-12),
        [[[pytest.approx(-0.25, abs=1e-12)]]],
        [[pytest.approx(-0.125, abs=1e-12)]],
    )
    # Cross-entropy: C = -ln 0.5 = ln 2, delta = a - y = -0.5, dW = -1.0.
    c, dW, db = reference.gradients(weights, biases, X, Y, cost="cross_entropy", **names)
    assert c == pytest.approx(math.log(2.0), abs=1e-12)
    assert db == [[pytest.approx(-0.5, abs=1e-12)]]
    assert dW == [[[pytest.approx(-1.0, abs=1e-12)]]]


def test_hand_worked_relu_then_leaky_relu_network():
    # Network 1-1-1-1: relu, then leaky relu (slope 0.25), identity output, quadratic cost.
    weights, biases, X, Y = [[[2.0]], [[-0.5]], [[1.0]]], [[-1.0], [0.0], [0.0]], [[1.0]], [[0.0]]
    names = dict(activation=["relu", "leaky_relu"], output="identity", leaky_slope=[0.9, 0.25])
    # z^1 = 2 - 1 = 1, a^1 = relu(1) = 1; z^2 = -0.5, a^2 = 0.25 * -0.5 = -0.125
    # (the first slope, 0.9, belongs to the relu layer and is unused);
    # z^3 = a^3 = -0.125, C = 0.5 * 0.125^2 = 0.0078125.
    zs, a = reference.layers(weights, biases, X[0], **names)
    assert (zs, a) == ([[1.0], [-0.5], [-0.125]], [[1.0], [-0.125], [-0.125]])
    # BP1: delta^3 = -0.125. BP2 with each layer's own sigma':
    # delta^2 = 1 * -0.125 * 0.25 = -0.03125 (leaky relu's slope for z^2 < 0),
    # delta^1 = -0.5 * -0.03125 * 1 = 0.015625 (relu' = 1 for z^1 > 0).
    deltas = reference.deltas(weights, biases, X[0], Y[0], cost="quadratic", **names)
    assert deltas == [[0.015625], [-0.03125], [-0.125]]
    # BP4: dW^l = delta^l a^(l-1): [0.015625 * 1], [-0.03125 * 1], [-0.125 * -0.125].
    c, dW, db = reference.gradients(weights, biases, X, Y, cost="quadratic", **names)
    assert c == 0.0078125
    assert dW == [[[0.015625]], [[-0.03125]], [[0.015625]]] and db == deltas
    # One activation for both layers is another network: relu's a^2 = 0.
    assert reference.forward(weights, biases, X[0], activation="relu", output="identity") == [0.0]


def test_batch_results_are_means_of_sample_results():
    rng = np.random.default_rng(7)
    weights, biases, X, Y = random_problem(rng, "sigmoid", "quadratic", min_width=2)
    X, Y = X + [[0.3] * len(X[0])], Y + [[0.2] * len(Y[0])]  # at least 2 samples
    names = dict(activation="tanh", output="sigmoid", cost="quadratic")
    c, dW, db = reference.gradients(weights, biases, X, Y, **names)
    per_sample = [reference.gradients(weights, biases, [x], [y], **names) for x, y in zip(X, Y)]
    assert c == pytest.approx(np.mean([s[0] for s in per_sample]), rel=1e-12)
    np.testing.assert_allclose(
        flatten(dW, db),
        np.mean([flatten(s[1], s[2]) for s in per_sample], axis=0),
        rtol=1e-12,
        atol=1e-15,
    )


# ---------------------------------------------------------------------------
# Forward pass and costs against independent NumPy formulas
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("output,cost", OUTPUT_COST_PAIRS)
def test_predict_and_cost_match_numpy(activation, output, cost):
    rng = np.random.default_rng(
        100 + HIDDEN_ACTIVATIONS.index(activation) + 10 * OUTPUT_COST_PAIRS.index((output, cost))
    )
    weights, biases, X, Y = random_problem(rng, output, cost)
    names = dict(activation=activation, output=output, leaky_slope=LEAKY_SLOPE)
    _, A = numpy_layer_zs(weights, biases, X, activation, output)
    predicted = reference.predict(weights, biases, X, **names)
    np.testing.assert_allclose(np.asarray(predicted), A, rtol=1e-12, atol=1e-15)
    assert reference.forward(weights, biases, X[0], **names) == predicted[0]

    Yn = np.asarray(Y)
    if cost == "quadratic":
        expected = np.mean(0.5 * np.sum((A - Yn) ** 2, axis=1))
    elif cost == "cross_entropy":
        expected = np.mean(-np.sum(Yn * np.log(A) + (1 - Yn) * np.log(1 - A), axis=1))
    else:
        expected = np.mean(-np.sum(Yn * np.log(A), axis=1))
    assert reference.cost(weights, biases, X, Y, cost=cost, **names) == pytest.approx(
        expected, rel=1e-10
    )


# ---------------------------------------------------------------------------
# 2. Gradients against central finite differences
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("output,cost", OUTPUT_COST_PAIRS)
@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_finite_differences(activation, output, cost, seed):
    rng = np.random.default_rng(
        [seed, HIDDEN_ACTIVATIONS.index(activation), OUTPUT_COST_PAIRS.index((output, cost))]
    )
    # Finite differences are invalid across the relu kink: redraw until every
    # hidden z is at least 1e-3 away from 0.
    for _ in range(100):
        weights, biases, X, Y = random_problem(rng, output, cost)
        if activation not in ("relu", "leaky_relu") or not hidden_zs_near_zero(
            weights, biases, X, activation, output
        ):
            break
    else:
        raise AssertionError("could not draw a problem away from the relu kink")
    names = dict(activation=activation, output=output, cost=cost, leaky_slope=LEAKY_SLOPE)

    c, dW, db = reference.gradients(weights, biases, X, Y, **names)
    assert c == reference.cost(weights, biases, X, Y, **names)
    assert [np.shape(layer) for layer in dW] == [np.shape(layer) for layer in weights]
    assert [np.shape(layer) for layer in db] == [np.shape(layer) for layer in biases]

    backprop = flatten(dW, db)
    numeric = flatten(*finite_difference_gradients(weights, biases, X, Y, **names))
    scale = max(np.max(np.abs(backprop)), 1e-3)
    np.testing.assert_allclose(backprop, numeric, rtol=0, atol=1e-6 * scale)


MIXED = [
    (HIDDEN_ACTIVATIONS[r:] + HIDDEN_ACTIVATIONS[:r], output, cost)
    for r in range(len(HIDDEN_ACTIVATIONS))
    for output, cost in OUTPUT_COST_PAIRS
]
MIXED_SLOPES = [0.1, 0.3, 0.05, 0.2, 0.5]


@pytest.mark.parametrize(
    "activations,output,cost", MIXED, ids=[f"{a[0]}-first-{o}-{c}" for a, o, c in MIXED]
)
def test_mixed_activations_match_numpy_and_finite_differences(activations, output, cost):
    """Five hidden layers, every activation once, each leaky relu with its own slope."""
    rng = np.random.default_rng(MIXED.index((activations, output, cost)))
    names = dict(activation=activations, output=output, leaky_slope=MIXED_SLOPES)
    for _ in range(100):  # away from the relu kinks, as above
        weights, biases, X, Y = random_problem(rng, output, cost, min_width=2, depth=6)
        zs, A = numpy_layer_zs(weights, biases, X, activations, output, MIXED_SLOPES)
        kinked = [l for l, name in enumerate(activations) if "relu" in name]
        if all(np.abs(zs[l]).min() >= 1e-3 for l in kinked):
            break
    else:
        raise AssertionError("could not draw a problem away from the relu kinks")
    predicted = reference.predict(weights, biases, X, **names)
    np.testing.assert_allclose(np.asarray(predicted), A, rtol=1e-12, atol=1e-15)
    c, dW, db = reference.gradients(weights, biases, X, Y, cost=cost, **names)
    assert c == reference.cost(weights, biases, X, Y, cost=cost, **names)
    backprop = flatten(dW, db)
    numeric = flatten(*finite_difference_gradients(weights, biases, X, Y, cost=cost, **names))
    scale = max(np.max(np.abs(backprop)), 1e-3)
    np.testing.assert_allclose(backprop, numeric, rtol=0, atol=1e-6 * scale)


def test_one_name_per_layer_alike_is_the_single_name():
    rng = np.random.default_rng(3)
    weights, biases, X, Y = random_problem(rng, "softmax", "log_likelihood", depth=3)
    one = dict(activation="leaky_relu", output="softmax", cost="log_likelihood", leaky_slope=0.2)
    each = dict(one, activation=("leaky_relu", "leaky_relu"), leaky_slope=[0.2, 0.2])
    assert reference.gradients(weights, biases, X, Y, **one) == reference.gradients(
        weights, biases, X, Y, **each
    )


# ---------------------------------------------------------------------------
# 3. Saturated outputs
# ---------------------------------------------------------------------------


def test_cross_entropy_saturated_delta_is_exactly_a_minus_y():
    # One layer, x = [1], so z^L = W[:, 0] and dC/db = dC/dW[:, 0] = delta^L.
    weights = [[[40.0], [-40.0], [35.0], [-1000.0], [1000.0]]]
    biases = [[0.0] * 5]
    X, Y = [[1.0]], [[0.0, 1.0, 0.3, 1.0, 1.0]]
    names = dict(activation="sigmoid", output="sigmoid", cost="cross_entropy")
    a = reference.forward(weights, biases, X[0], activation="sigmoid", output="sigmoid")
    c, dW, db = reference.gradients(weights, biases, X, Y, **names)
    delta = [a_j - y_j for a_j, y_j in zip(a, Y[0])]
    assert db == [delta]
    assert dW == [[[d] for d in delta]]
    assert delta[3] == -1.0 and delta[4] == 0.0
    # C = softplus(40) + softplus(40) + 0.3 softplus(-35) + 0.7 softplus(35)
    #     + softplus(1000) + 0; the log1p(exp(-|z|)) terms are below 1e-15.
    assert math.isfinite(c)
    assert c == pytest.approx(40.0 + 40.0 + 0.7 * 35.0 + 1000.0, rel=1e-12)
    assert reference.cost(weights, biases, X, Y, **names) == c


def test_log_likelihood_saturated_softmax():
    # z^L = [1000, 0], target [0, 1]: a = [1, exp(-1000) = 0], C = 1000 + ln(1 + e^-1000).
    weights, biases, X, Y = [[[1000.0], [0.0]]], [[0.0, 0.0]], [[1.0]], [[0.0, 1.0]]
    names = dict(activation="identity", output="softmax", cost="log_likelihood")
    c, dW, db = reference.gradients(weights, biases, X, Y, **names)
    assert math.isfinite(c)
    assert c == pytest.approx(1000.0, rel=1e-12)
    assert db == [[1.0, -1.0]]  # delta = a - y
    assert dW == [[[1.0], [-1.0]]]
    # Quadratic cost through the same saturated softmax stays finite too.
    c, dW, db = reference.gradients(weights, biases, X, Y, **dict(names, cost="quadratic"))
    assert c == pytest.approx(1.0, rel=1e-12)
    assert all(math.isfinite(g) for g in db[0])


@pytest.mark.parametrize("z", [30.0, -30.0, 45.0])
def test_sigmoid_prime_accurate_when_saturated(z):
    # Quadratic cost, sigmoid output, y = 0: dC/db = a * sigma'(z).  With the
    # identities sigma'(z) = 1 / (4 cosh(z/2)^2) and, for z > 0,
    # sigma(z) = (1 + tanh(z/2)) / 2, the expectation avoids 1 - sigma(z),
    # which keeps only ~3 correct digits at z = 30.
    a = (1.0 + math.tanh(z / 2)) / 2 if z > 0 else 1.0 / (1.0 + math.exp(-z))
    sigma_prime = 1.0 / (4.0 * math.cosh(z / 2) ** 2)
    _, _, db = reference.gradients(
        [[[z]]],
        [[0.0]],
        [[1.0]],
        [[0.0]],
        activation="identity",
        output="sigmoid",
        cost="quadratic",
    )
    assert db[0][0] == pytest.approx(a * sigma_prime, rel=1e-12, abs=0)


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("output,cost", OUTPUT_COST_PAIRS)
def test_saturated_networks_stay_finite(activation, output, cost):
    # Weights of size ~100 push every |z| far beyond 30 (up to ~1e4), where
    # naive exp, cosh and log(0) overflow or return inf/nan.
    rng = np.random.default_rng(3)
    widths = [3, 4, 4, 3]
    weights = [(100.0 * rng.normal(size=(o, i))).tolist() for i, o in zip(widths, widths[1:])]
    biases = [(10.0 * rng.normal(size=o)).tolist() for o in widths[1:]]
    X = (3.0 * rng.normal(size=(4, 3))).tolist()
    Y = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    # Shift each output bias by +-(1000 + max |z^L_j|) so every |z^L| >= 1000.
    zs, _ = numpy_layer_zs(weights, biases, X, activation, output)
    for j, z_j in enumerate(zs[-1].T):
        biases[-1][j] += (-1) ** j * (1000.0 + float(np.max(np.abs(z_j))))
    zs, _ = numpy_layer_zs(weights, biases, X, activation, output)
    assert np.all(np.abs(zs[-1]) >= 1000)
    names = dict(activation=activation, output=output, cost=cost)
    c, dW, db = reference.gradients(weights, biases, X, Y, **names)
    assert math.isfinite(c)
    assert np.all(np.isfinite(flatten(dW, db)))
    assert all(
        math.isfinite(a)
        for a in reference.forward(
            weights, biases, X[0], **dict(activation=activation, output=output)
        )
    )


# ---------------------------------------------------------------------------
# 4. sgd_epoch
# ---------------------------------------------------------------------------


def manual_sgd_epoch(weights, biases, X, Y, batch_size, lr, lmbda, n, **names):
    """The network2.py rule applied batch by batch with reference.gradients."""
    for start in range(0, len(X), batch_size):
        _, dW, db = reference.gradients(
            weights, biases, X[start : start + batch_size], Y[start : start + batch_size], **names
        )
        weights = [
            (1 - lr * lmbda / n) * np.asarray(w) - lr * np.asarray(g) for w, g in zip(weights, dW)
        ]
        biases = [np.asarray(b) - lr * np.asarray(g) for b, g in zip(biases, db)]
        weights = [w.tolist() for w in weights]
        biases = [b.tolist() for b in biases]
    return weights, biases


def test_sgd_epoch_matches_manual_batches_and_does_not_mutate():
    rng = np.random.default_rng(11)
    widths = [3, 5, 2]
    weights = [rng.normal(size=(o, i)).tolist() for i, o in zip(widths, widths[1:])]
    biases = [rng.normal(size=o).tolist() for o in widths[1:]]
    X = rng.normal(size=(7, 3)).tolist()
    Y = rng.uniform(size=(7, 2)).tolist()
    names = dict(activation="tanh", output="sigmoid", cost="cross_entropy")
    originals = copy.deepcopy((weights, biases, X, Y))

    # Batches of 3, 3 and a smaller last batch of 1.
    new_w, new_b = reference.sgd_epoch(
        weights, biases, X, Y, batch_size=3, lr=0.5, lmbda=2.0, n=20, **names
    )
    expected_w, expected_b = manual_sgd_epoch(weights, biases, X, Y, 3, 0.5, 2.0, 20, **names)
    np.testing.assert_allclose(
        flatten(new_w, new_b), flatten(expected_w, expected_b), rtol=1e-12, atol=1e-14
    )
    # Dropping the last one-sample batch would give a different result.
    dropped_w, dropped_b = manual_sgd_epoch(weights, biases, X[:6], Y[:6], 3, 0.5, 2.0, 20, **names)
    assert not np.allclose(flatten(new_w, new_b), flatten(dropped_w, dropped_b))

    assert (weights, biases, X, Y) == originals
    new_w[0][0][0] += 1.0  # the result shares no lists with the inputs
    new_b[0][0] += 1.0
    assert (weights, biases, X, Y) == originals


def test_sgd_epoch_n_defaults_to_len_X():
    rng = np.random.default_rng(12)
    weights = [rng.normal(size=(2, 2)).tolist()]
    biases = [rng.normal(size=2).tolist()]
    X, Y = rng.normal(size=(4, 2)).tolist(), rng.normal(size=(4, 2)).tolist()
    names = dict(
        activation="relu", output="identity", cost="quadratic", batch_size=2, lr=0.1, lmbda=1.0
    )
    default = reference.sgd_epoch(weights, biases, X, Y, **names)
    assert default == reference.sgd_epoch(weights, biases, X, Y, n=4, **names)
    assert default != reference.sgd_epoch(weights, biases, X, Y, n=8, **names)


def test_weight_decay_shrinks_weights_but_not_biases():
    # Targets equal to the network's own identity outputs make every gradient
    # exactly 0, so one full batch leaves only the decay factor:
    # w <- (1 - lr*lmbda/n) w = (1 - 0.1*0.5/10) w = 0.995 w, and b unchanged.
    weights = [[[1.0, -2.0], [0.5, 4.0]], [[3.0, -1.0]]]
    biases = [[0.1, -0.2], [0.3]]
    X = [[1.0, 2.0], [-1.0, 0.5], [0.25, -3.0]]
    names = dict(activation="leaky_relu", output="identity")
    Y = reference.predict(weights, biases, X, **names)
    new_w, new_b = reference.sgd_epoch(
        weights, biases, X, Y, batch_size=3, lr=0.1, lmbda=0.5, n=10, cost="quadratic", **names
    )
    factor = 1 - 0.1 * 0.5 / 10
    assert new_b == biases
    for w_new, w_old in zip(new_w, weights):
        np.testing.assert_allclose(w_new, factor * np.asarray(w_old), rtol=1e-15, atol=0)
    # Without decay nothing moves at all.
    unchanged = reference.sgd_epoch(
        weights, biases, X, Y, batch_size=3, lr=0.1, cost="quadratic", **names
    )
    assert unchanged == (weights, biases)


# ---------------------------------------------------------------------------
# 5. Invalid names and pairings
# ---------------------------------------------------------------------------


TWO_OUTPUTS = ([[[1.0], [2.0]]], [[0.0, 0.0]], [[1.0]], [[1.0, 0.0]])
ONE_OUTPUT = ([[[1.0]]], [[0.0]], [[1.0]], [[1.0]])


@pytest.mark.parametrize(
    "problem,names,match",
    [
        (TWO_OUTPUTS, dict(activation="softmax", output="sigmoid", cost="quadratic"), "activation"),
        (TWO_OUTPUTS, dict(activation="swish", output="sigmoid", cost="quadratic"), "activation"),
        (TWO_OUTPUTS, dict(activation="tanh", output="tanh", cost="quadratic"), "output"),
        (TWO_OUTPUTS, dict(activation="tanh", output="relu", cost="quadratic"), "output"),
        (TWO_OUTPUTS, dict(activation="tanh", output="sigmoid", cost="mse"), "cost"),
        (TWO_OUTPUTS, dict(activation="tanh", output="softmax", cost="cross_entropy"), "cost"),
        (TWO_OUTPUTS, dict(activation="tanh", output="identity", cost="cross_entropy"), "cost"),
        (TWO_OUTPUTS, dict(activation="tanh", output="sigmoid", cost="log_likelihood"), "cost"),
        (TWO_OUTPUTS, dict(activation="tanh", output="identity", cost="log_likelihood"), "cost"),
        (ONE_OUTPUT, dict(activation="tanh", output="softmax", cost="quadratic"), "softmax"),
        (ONE_OUTPUT, dict(activation="tanh", output="softmax", cost="log_likelihood"), "softmax"),
    ],
)
def test_invalid_names_and_pairings_raise(problem, names, match):
    weights, biases, X, Y = problem
    with pytest.raises(ValueError, match=match):
        reference.cost(weights, biases, X, Y, **names)
    with pytest.raises(ValueError, match=match):
        reference.gradients(weights, biases, X, Y, **names)
    with pytest.raises(ValueError, match=match):
        reference.sgd_epoch(weights, biases, X, Y, batch_size=1, lr=0.1, **names)
    if match != "cost":  # forward and predict take no cost
        forward_names = dict(activation=names["activation"], output=names["output"])
        with pytest.raises(ValueError, match=match):
            reference.forward(weights, biases, X[0], **forward_names)
        with pytest.raises(ValueError, match=match):
            reference.predict(weights, biases, X, **forward_names)


THREE_LAYERS = ([[[1.0]], [[1.0]], [[1.0]]], [[0.0], [0.0], [0.0]], [[1.0]], [[1.0]])


@pytest.mark.parametrize(
    "names,match",
    [
        (dict(activation=["tanh"]), r"activation must be one value or one per hidden layer \(2\)"),
        (dict(activation=["tanh"] * 3), r"one per hidden layer \(2\), got 3"),
        (dict(activation=["tanh", "softmax"]), "activation of hidden layer 2"),
        (dict(activation=["swish", "tanh"]), "activation of hidden layer 1"),
        (dict(activation="tanh", leaky_slope=[0.1]), r"leaky_slope must be .* \(2\), got 1"),
    ],
)
def test_invalid_per_layer_activations_raise(names, match):
    weights, biases, X, Y = THREE_LAYERS
    names = {"output": "identity", "cost": "quadratic", **names}
    with pytest.raises(ValueError, match=match):
        reference.gradients(weights, biases, X, Y, **names)
    with pytest.raises(ValueError, match=match):
        reference.sgd_epoch(weights, biases, X, Y, batch_size=1, lr=0.1, **names)
    del names["cost"]
    with pytest.raises(ValueError, match=match):
        reference.predict(weights, biases, X, **names)
    with pytest.raises(ValueError, match=match):
        reference.layers(weights, biases, X[0], **names)


def test_invalid_batch_size_raises():
    weights, biases, X, Y = ONE_OUTPUT
    with pytest.raises(ValueError, match="batch_size"):
        reference.sgd_epoch(
            weights,
            biases,
            X,
            Y,
            batch_size=0,
            lr=0.1,
            activation="tanh",
            output="identity",
            cost="quadratic",
        )


def test_valid_pairings_are_accepted():
    weights, biases, X, Y = TWO_OUTPUTS
    for activation, (output, cost) in itertools.product(HIDDEN_ACTIVATIONS, OUTPUT_COST_PAIRS):
        value = reference.cost(
            weights, biases, X, Y, activation=activation, output=output, cost=cost
        )
        assert math.isfinite(value)
