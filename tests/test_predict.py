"""Single-row prediction: the core's matrix-vector path computes what the batched GEMM path and
the reference compute, and inputs already in the core's layout (checked in one test) are
refused or accepted exactly as any other input."""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp
from conftest import RTOL, assert_close, reference_call


@pytest.mark.parametrize("activation", dp.ACTIVATIONS)
@pytest.mark.parametrize("output", dp.OUTPUTS)
def test_one_row_is_predicted_as_in_a_batch_and_by_the_reference(rng, dtype, activation, output):
    net = dp.Network([6, 9, 7, 3], activation=activation, output=output, dtype=dtype, seed=5)
    X = rng.normal(size=(5, 6)).astype(dtype)
    batch = net.predict(X)
    expected = np.array(
        dp.reference.predict(
            [W.astype(float).tolist() for W in net.weights],
            [b.astype(float).tolist() for b in net.biases],
            X.astype(float).tolist(),
            activation=activation,
            output=output,
        )
    )
    for i in range(len(X)):
        row = net.predict(X[i : i + 1])
        assert_close(row, batch[i : i + 1], RTOL[dtype])
        assert_close(row, expected[i : i + 1], RTOL[dtype])


def test_one_row_cost_and_gradients_match_the_reference(rng):
    net = dp.Network([4, 5, 2], activation="tanh", output="softmax", cost="log_likelihood", seed=2)
    X, Y = rng.normal(size=(1, 4)), np.array([[0.3, 0.7]])
    cost, dW, db = net.gradients(X, Y)
    expected_cost, expected_dW, expected_db = reference_call(dp.reference.gradients, net, X, Y)
    assert cost == pytest.approx(expected_cost, rel=1e-12)
    for actual, expected in zip(dW + db, list(expected_dW) + list(expected_db)):
        assert_close(actual, expected, RTOL["float64"])


@pytest.mark.parametrize(
    ("X", "error", "message"),
    [
        (np.full((1, 4), np.nan, np.float32), ValueError, "X: contains NaN or infinity"),
        (np.ones((1, 5), np.float32), ValueError, r"X: expected shape \(n_samples, 4\)"),
        (np.ones((0, 4), np.float32), ValueError, "X: empty batch"),
        (np.ones(4, np.float32), ValueError, r"reshape a single sample to \(1, n_features\)"),
        (np.ones((1, 4), np.complex64), TypeError, "X: expected real numbers"),
        (np.ma.masked_array(np.ones((1, 4), np.float32)), TypeError, "X: masked arrays"),
    ],
    ids=["nan", "columns", "empty", "1-D", "complex", "masked"],
)
def test_bad_single_rows_are_refused_as_any_input(X, error, message):
    net = dp.Network([4, 3, 2], dtype="float32", seed=0)
    with pytest.raises(error, match=message):
        net.predict(X)


def test_inputs_needing_conversion_give_the_same_answer(rng):
    net = dp.Network([4, 3, 2], dtype="float32", seed=0)
    X = rng.normal(size=(1, 4)).astype(np.float32)
    expected = net.predict(X)
    for variant in (
        X.astype(np.float64),
        X.astype(">f4"),
        np.asfortranarray(np.tile(X, (2, 1)))[:1],
        X.tolist(),
        X.view(type("Subclass", (np.ndarray,), {})),
    ):
        np.testing.assert_array_equal(net.predict(variant), expected)
    unaligned = np.frombuffer(b"\0" + X.tobytes(), dtype=np.float32, offset=1).reshape(1, 4)
    assert not unaligned.flags.aligned
    np.testing.assert_array_equal(net.predict(unaligned), expected)
