"""fit(standardize=True): the scaler is StandardScaler's, kept in the network and applied by
every computation, exactly as training a plain network on the scaled data would."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse
from sklearn.preprocessing import StandardScaler

import deltaprop as dp
from deltaprop._scaling import Scaling


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal([3.0, -200.0, 0.5, 1e4], [5.0, 30.0, 1e-3, 1.0], size=(n, 4))
    X[:, 2] = 7.25  # a constant column: its scale is 1, as StandardScaler makes it
    y = (X[:, 0] > 3).astype(int) + (X[:, 1] > -200)
    return X, y


def _network(dtype="float64", seed=1):
    return dp.Network(
        [4, 6, 3],
        activation="tanh",
        output="softmax",
        cost="log_likelihood",
        dtype=dtype,
        seed=seed,
    )


def _scaled_by(net, X):
    return (np.asarray(X, net.dtype) - net.input_mean.astype(net.dtype)) / net.input_scale.astype(
        net.dtype
    )


def test_the_scaler_is_standard_scalers():
    X, y = _data()
    net = _network()
    net.fit(X, y, standardize=True, epochs=1)
    expected = StandardScaler().fit(X)
    np.testing.assert_allclose(net.input_mean, expected.mean_, rtol=1e-13)
    np.testing.assert_allclose(net.input_scale, expected.scale_, rtol=1e-12)
    assert net.input_scale[2] == 1.0
    assert not net.input_mean.flags.writeable and not net.input_scale.flags.writeable


def test_a_float32_network_learns_the_scaler_in_float64_sums():
    X, y = _data()
    net = _network("float32")
    net.fit(X.astype(np.float32), y, standardize=True, epochs=1)
    expected = StandardScaler().fit(X.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(net.input_mean, expected.mean_, rtol=1e-12)
    np.testing.assert_allclose(net.input_scale, expected.scale_, rtol=1e-10)


def test_sample_weights_give_the_weighted_mean_and_std():
    X, y = _data()
    weights = np.random.default_rng(3).uniform(0.0, 2.0, size=len(X))
    net = _network()
    net.fit(X, y, sample_weight=weights, standardize=True, epochs=1)
    mean = (weights[:, None] * X).sum(axis=0) / weights.sum()
    std = np.sqrt((weights[:, None] * (X - mean) ** 2).sum(axis=0) / weights.sum())
    std[2] = 1.0
    np.testing.assert_allclose(net.input_mean, mean, rtol=1e-13)
    np.testing.assert_allclose(net.input_scale, std, rtol=1e-12)
    with_weights = StandardScaler().fit(X, sample_weight=weights)
    np.testing.assert_allclose(net.input_scale, with_weights.scale_, rtol=1e-12)


def test_chunks_give_the_same_moments_as_one_pass(monkeypatch):
    X, _ = _data(n=1000)
    whole = Scaling.learn(X, None)
    monkeypatch.setattr(dp._scaling, "_CHUNK_BYTES", 8 * 4 * 7)  # 7 rows a chunk
    chunked = Scaling.learn(X, None)
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=1e-14)
    np.testing.assert_allclose(chunked.scale, whole.scale, rtol=1e-13)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_inputs_are_scaled_only_as_with_mean_false(fmt):
    rng = np.random.default_rng(5)
    dense = rng.normal(2.0, 3.0, size=(50, 6)) * (rng.random((50, 6)) < 0.3)
    dense[:, 4] = 0.0  # an empty column keeps the scale 1
    X = scipy.sparse.random(50, 6, density=0.0, format=fmt) + scipy.sparse.csr_matrix(dense)
    X = X.asformat(fmt)
    weights = rng.uniform(0.5, 2.0, size=50)
    for w in (None, weights):
        scaling = Scaling.learn(X, w)
        expected = StandardScaler(with_mean=False).fit(X, sample_weight=w)
        assert not scaling.centres and not scaling.mean.any()
        np.testing.assert_allclose(scaling.scale, expected.scale_, rtol=1e-12)
        scaled = scaling.apply(X, np.float64, in_place=False)
        assert scipy.sparse.issparse(scaled) and scaled.format == fmt
        np.testing.assert_allclose(scaled.toarray(), expected.transform(X).toarray(), rtol=1e-14)
        np.testing.assert_array_equal(X.toarray(), dense)  # the caller's matrix is untouched


def test_sparse_moments_count_duplicates_once_summed():
    rows, cols, values = [0, 0, 1, 2], [1, 1, 0, 1], [1.0, 2.0, 4.0, 5.0]
    X = scipy.sparse.coo_matrix((values, (rows, cols)), shape=(3, 2)).tocsr()
    X.has_canonical_format = False
    X.data, X.indices, X.indptr = np.array(values), np.array(cols), np.array([0, 2, 3, 4])
    dense = np.array([[0.0, 3.0], [4.0, 0.0], [0.0, 5.0]])
    np.testing.assert_allclose(Scaling.learn(X, None).scale, dense.std(axis=0), rtol=1e-14)


def test_a_scaling_that_centres_refuses_sparse_inputs():
    scaling = Scaling([1.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"centres its inputs.*toarray"):
        scaling.apply(scipy.sparse.eye(2, format="csr"), np.float64, in_place=False)


@pytest.mark.parametrize(
    ("mean", "scale", "match"),
    [
        ([0.0, 1.0], [1.0, 0.0], "scale > 0"),
        ([0.0, np.nan], [1.0, 1.0], "NaN"),
        ([0.0], [1.0, 2.0], "shape"),
    ],
    ids=["zero-scale", "nan", "lengths"],
)
def test_an_invalid_scaling_is_refused(mean, scale, match):
    with pytest.raises(ValueError, match=match):
        Scaling(mean, scale)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_training_is_that_of_a_plain_network_on_the_scaled_inputs(optimizer):
    X, y = _data()
    X_val, y_val = _data(n=30, seed=9)
    options = dict(optimizer=optimizer, epochs=4, train_accuracy=True)
    if optimizer == "adam":
        options.update(validation_data=(X_val, y_val), batch_size=16)
    net = _network()
    history = net.fit(X, y, standardize=True, **options)
    plain = _network()
    if optimizer == "adam":
        options["validation_data"] = (_scaled_by(net, X_val), y_val)
    plain_history = plain.fit(_scaled_by(net, X), y, **options)
    np.testing.assert_array_equal(net.params, plain.params)
    for key in history:
        if key != "time":
            assert history[key] == plain_history[key], key
    np.testing.assert_array_equal(net.predict(X_val), plain.predict(_scaled_by(net, X_val)))


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_sparse_fit_scales_only_and_trains_as_on_the_scaled_dense_inputs(fmt, optimizer):
    X, y = _data()
    X[np.random.default_rng(5).random(X.shape) < 0.6] = 0.0
    X_val, y_val = X[:30], y[:30]
    sparse = scipy.sparse.csr_matrix(X).asformat(fmt)
    options = dict(optimizer=optimizer, epochs=4, seed=3)
    if optimizer == "adam":
        options.update(batch_size=16, validation_data=(scipy.sparse.csr_matrix(X_val), y_val))
    net = _network()
    history = net.fit(sparse, y, standardize=True, **options)
    np.testing.assert_array_equal(net.input_mean, np.zeros(4))  # with_mean=False
    np.testing.assert_allclose(
        net.input_scale, StandardScaler(with_mean=False).fit(sparse).scale_, rtol=1e-13
    )
    plain = _network()
    if optimizer == "adam":
        options["validation_data"] = (_scaled_by(net, X_val), y_val)
    plain_history = plain.fit(_scaled_by(net, X), y, **options)
    np.testing.assert_allclose(net.params, plain.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(history["cost"], plain_history["cost"], rtol=1e-10)
    # A scaling learned from sparse X divides only: sparse and dense inputs both take it.
    np.testing.assert_allclose(net.predict(sparse), net.predict(X), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(net.predict(X), plain.predict(_scaled_by(net, X)), rtol=1e-9)


def test_a_held_out_split_is_scaled_with_the_rest():
    X, y = _data()
    net, plain = _network(), _network()
    history = net.fit(X, y, standardize=True, epochs=3, validation_fraction=0.25)
    plain_history = plain.fit(_scaled_by(net, X), y, epochs=3, validation_fraction=0.25)
    np.testing.assert_array_equal(net.params, plain.params)
    assert history["val_cost"] == plain_history["val_cost"]
    np.testing.assert_allclose(net.input_mean, StandardScaler().fit(X).mean_, rtol=1e-13)


def test_every_computation_applies_the_scaling():
    X, y = _data()
    net = _network()
    net.fit(X, y, standardize=True, epochs=2)
    plain = dp.Network.from_params(
        net.weights, net.biases, activation="tanh", output="softmax", cost="log_likelihood"
    )
    Xs = _scaled_by(net, X)
    assert plain.input_mean is None
    np.testing.assert_array_equal(net.predict(X), plain.predict(Xs))
    np.testing.assert_array_equal(net.predict_classes(X), plain.predict_classes(Xs))
    assert net.evaluate(X, y) == plain.evaluate(Xs, y)
    assert net.cost(X, y) == plain.cost(Xs, y)
    for got, want in zip(net.gradients(X, y)[1], plain.gradients(Xs, y)[1]):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(net.objective(X, y)[1], plain.objective(Xs, y)[1])
    for got, want in zip(net.forward(X, return_layers=True), plain.forward(Xs, return_layers=True)):
        np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(net.deltas(X, y)[0], plain.deltas(Xs, y)[0])
    assert net.sgd_step(X, y, lr=0.1) == plain.sgd_step(Xs, y, lr=0.1)
    np.testing.assert_array_equal(net.params, plain.params)
    assert net.gradient_check(X[:4], y[:4]).max_error < 1e-5


def test_later_fits_keep_the_scaling_and_standardize_learns_it_again():
    X, y = _data()
    net = _network()
    net.fit(X, y, standardize=True, epochs=1)
    mean = net.input_mean
    plain = _network()
    plain.params[...] = net.params
    net.fit(X[:60], y[:60], epochs=2)  # standardize=False: the network's scaling, unchanged
    plain.fit(_scaled_by(net, X[:60]), y[:60], epochs=2, optimizer=net.optimizer)
    assert net.input_mean is mean
    np.testing.assert_array_equal(net.params, plain.params)
    net.fit(X[:60] * 2, y[:60], standardize=True, epochs=1)
    np.testing.assert_allclose(net.input_mean, StandardScaler().fit(X[:60] * 2).mean_, rtol=1e-13)


@pytest.mark.parametrize(
    "make",
    [
        lambda X: X,
        lambda X: X.astype(np.float32),
        lambda X: np.asfortranarray(X),
        lambda X: X.tolist(),
        lambda X: X[:, ::1][::1],
    ],
    ids=["float64", "float32", "fortran", "list", "view"],
)
def test_the_callers_inputs_are_never_changed(make):
    X, y = _data()
    given = make(X.copy())
    before = np.array(given, copy=True)
    net = _network()
    net.fit(given, y, standardize=True, epochs=1, validation_data=(given, y))
    net.predict(given)
    net.cost(given, y)
    np.testing.assert_array_equal(np.asarray(given), before)


def test_non_finite_inputs_are_refused_and_leave_the_network_as_it_was():
    X, y = _data()
    X[3, 1] = np.nan
    net = _network()
    params = net.params.copy()
    with pytest.raises(ValueError, match="X: contains NaN"):
        net.fit(X, y, standardize=True, epochs=1)
    assert net.input_mean is None and net.optimizer is None
    np.testing.assert_array_equal(net.params, params)


def test_an_invalid_argument_leaves_the_scaling_as_it_was():
    X, y = _data()
    net = _network()
    net.fit(X, y, standardize=True, epochs=1)
    mean = net.input_mean
    with pytest.raises(ValueError, match="dropout"):
        net.fit(X * 3, y, standardize=True, dropout=2.0)
    assert net.input_mean is mean


def test_input_mean_and_scale_cannot_be_set():
    net = _network()
    assert net.input_mean is None and net.input_scale is None
    with pytest.raises(AttributeError):
        net.input_mean = np.zeros(4)


def test_pickles_keep_the_scaling():
    X, y = _data()
    net = _network()
    net.fit(X, y, standardize=True, epochs=1)
    copy = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(copy.input_mean, net.input_mean)
    np.testing.assert_array_equal(copy.predict(X), net.predict(X))
    state = net.__getstate__()
    del state["input_scaling"]  # a pickle of an earlier version
    older = dp.Network.__new__(dp.Network)
    older.__setstate__(state)
    assert older.input_mean is None


def test_a_resumed_run_restores_the_scaling_and_ends_as_an_uninterrupted_one(tmp_path):
    X, y = _data()
    path = tmp_path / "run.npz"
    whole = _network()
    whole.fit(X, y, standardize=True, epochs=4, optimizer="adam", seed=3)

    first = _network()
    first.fit(X, y, standardize=True, epochs=2, optimizer="adam", seed=3, checkpoint=path)
    assert dp.load(path).input_scale is not None
    resumed = _network()
    resumed.fit(
        X, y, standardize=True, epochs=4, optimizer="adam", seed=3, checkpoint=path, resume=True
    )
    np.testing.assert_array_equal(resumed.params, whole.params)
    np.testing.assert_array_equal(resumed.input_mean, whole.input_mean)

    other = _network()
    with pytest.raises(ValueError, match="another input scaling"):
        other.fit(X, y, epochs=4, optimizer="adam", seed=3, checkpoint=path, resume=True)
