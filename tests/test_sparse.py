"""Sparse inputs: scipy.sparse CSR/CSC X gives what its dense copy gives, and bad ones a
clear error each."""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp
from conftest import assert_close, reference_gradients
from deltaprop import _sparse

sparse = pytest.importorskip("scipy.sparse")

N_IN, N_OUT = 40, 3


def sparse_problem(n_samples: int = 60, density: float = 0.1, dtype=np.float64, seed: int = 3):
    """A CSR X (some rows empty), class labels, and a tanh/softmax network for them."""
    rng = np.random.default_rng(seed)
    X = sparse.random(n_samples, N_IN, density=density, format="csr", random_state=seed)
    X.data = rng.normal(size=X.nnz)
    X = X.astype(dtype)
    labels = rng.integers(0, N_OUT, size=n_samples)
    return X, labels


def network(dtype="float64", **options):
    sizes = options.pop("sizes", [N_IN, 7, 5, N_OUT])
    return dp.Network(
        sizes, activation="relu", output="softmax", cost="log_likelihood", dtype=dtype, seed=1,
        **options,
    )  # fmt: skip


def pair(dtype="float64", **options):
    """Two networks with the same parameters: one for the sparse X, one for its dense copy."""
    return network(dtype, **options), network(dtype, **options)


def fit_both(X, labels, dtype="float64", sizes=None, **fit_options):
    """The parameters after fitting the sparse X and, from the same start, its dense copy."""
    extra = {} if sizes is None else {"sizes": sizes}
    on_sparse, on_dense = pair(dtype, **extra)
    on_sparse.fit(X, labels, **fit_options)
    on_dense.fit(X.toarray(), labels, **fit_options)
    return on_sparse, on_dense


TRAININGS = {
    "sgd": dict(optimizer="sgd", lr=0.3),
    "sgd-l2": dict(optimizer="sgd", lr=0.3, lmbda=2.0),
    "sgd-l1": dict(optimizer="sgd", lr=0.3, l1=0.5),
    "momentum": dict(optimizer="momentum", lr=0.1),
    "momentum-l2": dict(optimizer="momentum", lr=0.1, lmbda=3.0),
    "momentum-l1": dict(optimizer="momentum", lr=0.1, l1=0.5),
    "adam": dict(optimizer="adam", lr=0.01),
    "rprop": dict(optimizer="rprop", lr=0.01, batch_size=60),
    "dropout": dict(optimizer="sgd", lr=0.3, dropout=0.3),
    "in-order": dict(optimizer="nesterov", lr=0.1, shuffle=False),
}


@pytest.mark.parametrize("training", TRAININGS.values(), ids=TRAININGS.keys())
def test_a_sparse_fit_gives_the_parameters_of_the_dense_fit(training):
    X, labels = sparse_problem()
    options = {"epochs": 3, "batch_size": 8, "seed": 5, **training}
    on_sparse, on_dense = fit_both(X, labels, **options)
    assert not np.array_equal(on_sparse.params, network().params)  # it trained
    assert_close(on_sparse.params, on_dense.params, rtol=1e-10)


@pytest.mark.parametrize("training", ["momentum", "momentum-l2", "adam"])
def test_an_epoch_in_many_core_calls_gives_the_dense_fit(training, monkeypatch):
    """Each call transposes W^1 and back, and momentum's rows catch up at its end."""
    from deltaprop import _minibatch

    monkeypatch.setattr(_minibatch, "_ROWS_PER_CALL", 16)
    monkeypatch.setattr(_minibatch, "_SPARSE_ROWS_PER_CALL", 16)
    X, labels = sparse_problem(n_samples=90)
    options = {"epochs": 2, "batch_size": 5, "seed": 2, **TRAININGS[training]}
    on_sparse, on_dense = fit_both(X, labels, **options)
    assert_close(on_sparse.params, on_dense.params, rtol=1e-10)


def test_momentum_that_diverges_keeps_the_dense_fits_weights():
    """The replay after divergence brings every row of W^1 up to date, as the dense fit."""
    X, labels = sparse_problem()
    X.data *= 1e30
    kept = []
    for net, inputs in zip(pair(), (X, X.toarray())):
        with pytest.raises(dp.DivergenceError) as raised:
            net.fit(inputs, labels, epochs=2, batch_size=8, optimizer="momentum", lr=1e60)
        kept.append((net.params, str(raised.value)))
    assert "epoch 0, batch 1:" in kept[0][1] and kept[0][1] == kept[1][1]  # batch 0 kept
    assert np.isfinite(kept[0][0]).all()
    assert_close(kept[0][0], kept[1][0], rtol=1e-10)


def test_a_sparse_fit_with_one_layer_gives_the_dense_fit():
    """No hidden layer: the output layer is the sparse one."""
    X, labels = sparse_problem()
    on_sparse, on_dense = fit_both(
        X, labels, sizes=[N_IN, N_OUT], epochs=2, batch_size=7, optimizer="adam", lr=0.01
    )
    assert_close(on_sparse.params, on_dense.params, rtol=1e-10)


def test_sample_weights_and_validation_data_work_as_dense():
    X, labels = sparse_problem()
    weights = np.random.default_rng(0).random(X.shape[0])
    X_val, labels_val = sparse_problem(20, seed=9)
    options = dict(epochs=2, batch_size=8, sample_weight=weights, optimizer="adam", lr=0.01)
    on_sparse, on_dense = pair()
    history = on_sparse.fit(X, labels, validation_data=(X_val, labels_val), **options)
    expected = on_dense.fit(
        X.toarray(), labels, validation_data=(X_val.toarray(), labels_val), **options
    )
    assert_close(on_sparse.params, on_dense.params, rtol=1e-10)
    assert_close(history["val_cost"], expected["val_cost"], rtol=1e-10)
    assert history["val_accuracy"] == expected["val_accuracy"]


def test_a_validation_fraction_holds_out_the_same_rows():
    X, labels = sparse_problem()
    options = dict(epochs=2, batch_size=8, validation_fraction=0.25, optimizer="sgd", lr=0.3)
    on_sparse, on_dense = fit_both(X, labels, **options)
    assert_close(on_sparse.params, on_dense.params, rtol=1e-10)
    assert on_sparse.history["val_cost"] == pytest.approx(on_dense.history["val_cost"], rel=1e-10)


def test_lbfgs_on_sparse_rows_gives_the_dense_result():
    pytest.importorskip("scipy.optimize")
    X, labels = sparse_problem()
    on_sparse, on_dense = fit_both(X, labels, epochs=15, optimizer="lbfgs", lmbda=0.5)
    assert_close(on_sparse.params, on_dense.params, rtol=1e-10)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("form", ["csr_matrix", "csr_array", "csc_matrix", "csc_array"])
def test_predictions_and_gradients_equal_the_dense_ones(form, index_dtype):
    X, labels = sparse_problem()
    X = getattr(sparse, form)(X)
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    net = network()
    dense = X.toarray()
    assert_close(net.predict(X), net.predict(dense), rtol=1e-12)
    assert np.array_equal(net.predict_classes(X), net.predict_classes(dense))
    assert net.evaluate(X, labels) == net.evaluate(dense, labels)
    assert net.cost(X, labels) == pytest.approx(net.cost(dense, labels), rel=1e-12)
    cost, dW, db = net.gradients(X, labels)
    expected_cost, expected_dW, expected_db = net.gradients(dense, labels)
    assert cost == pytest.approx(expected_cost, rel=1e-12)
    for actual, expected in zip(dW + db, expected_dW + expected_db):
        assert_close(actual, expected, rtol=1e-12)


def test_the_objective_and_a_look_inside_equal_the_dense_ones():
    X, labels = sparse_problem()
    net, dense = network(), X.toarray()
    weights = np.random.default_rng(1).random(X.shape[0])
    cost, gradient = net.objective(X, labels, sample_weight=weights, lmbda=1.0, l1=0.1)
    expected_cost, expected = net.objective(dense, labels, sample_weight=weights, lmbda=1.0, l1=0.1)
    assert cost == pytest.approx(expected_cost, rel=1e-12)
    assert_close(gradient, expected, rtol=1e-12)
    for actual, expected in zip(net.deltas(X, labels), net.deltas(dense, labels)):
        assert_close(actual, expected, rtol=1e-12)
    zs, _ = net.forward(X, return_layers=True)
    assert_close(zs[0], net.forward(dense, return_layers=True)[0][0], rtol=1e-12)


def test_gradients_match_the_reference():
    """The sparse first layer against the pure-Python oracle."""
    X, labels = sparse_problem(12)
    net = network()
    Y = np.eye(N_OUT)[labels]
    expected_cost, expected_dW, expected_db = reference_gradients(net, X.toarray(), Y)
    cost, dW, db = net.gradients(X, labels)
    assert cost == pytest.approx(expected_cost, rel=1e-10)
    for actual, expected in zip(dW + db, list(expected_dW) + list(expected_db)):
        assert_close(actual, expected, rtol=1e-10)


def test_float32_tracks_float64():
    X, labels = sparse_problem()
    on_sparse, on_dense = fit_both(
        X.astype(np.float32), labels, dtype="float32", epochs=2, batch_size=8, lr=0.3
    )
    assert on_sparse.dtype == np.float32
    assert_close(on_sparse.params, on_dense.params, rtol=1e-4)
    assert on_sparse.predict(X).dtype == np.float32  # float64 data converted


def test_a_large_batch_runs_in_chunks_as_dense():
    """More rows than one chunk of the core (predict and objective go chunk by chunk)."""
    X, labels = sparse_problem(9000, density=0.02)
    net = network()
    assert_close(net.predict(X), net.predict(X.toarray()), rtol=1e-12)
    _, gradient = net.objective(X, labels)
    assert_close(gradient, net.objective(X.toarray(), labels)[1], rtol=1e-10)


def test_unsorted_indices_are_sorted_into_a_copy():
    X, _ = sparse_problem()
    shuffled = X.copy()
    for r in range(X.shape[0]):  # reverse each row's entries
        begin, end = X.indptr[r], X.indptr[r + 1]
        shuffled.indices[begin:end] = X.indices[begin:end][::-1]
        shuffled.data[begin:end] = X.data[begin:end][::-1]
    shuffled.has_sorted_indices = False
    before = shuffled.indices.copy()
    net = network()
    assert np.array_equal(net.predict(shuffled), net.predict(X))
    assert np.array_equal(shuffled.indices, before)  # the caller's matrix is not changed


def test_a_csc_fit_gives_the_csr_fit():
    X, labels = sparse_problem()
    on_csr, on_csc = pair()
    on_csr.fit(X, labels, epochs=2, batch_size=8)
    on_csc.fit(X.tocsc(), labels, epochs=2, batch_size=8)
    assert np.array_equal(on_csr.params, on_csc.params)


def test_explicit_zeros_and_empty_rows_are_fine():
    X = sparse.csr_matrix(
        (np.array([0.0, 2.0, 0.0]), np.array([1, 3, 0]), np.array([0, 2, 2, 3])), shape=(3, N_IN)
    )
    net = network()
    assert_close(net.predict(X), net.predict(X.toarray()), rtol=1e-12)


def bad_inputs():
    X, _ = sparse_problem()
    duplicated = sparse.csr_matrix(
        (np.ones(2), np.array([4, 4]), np.array([0, 2] + [2] * 59)), shape=(60, N_IN)
    )
    with_nan, with_inf = X.copy(), X.copy()
    with_nan.data[3], with_inf.data[0] = np.nan, np.inf
    broken = X.copy()
    broken.indices[5] = N_IN + 2
    complex_X = X.astype(np.complex128)
    wide_indices = X.copy()
    wide_indices.indices = wide_indices.indices.astype(np.int16)
    return {
        "coo": (X.tocoo(), TypeError, r"X: scipy.sparse COO is not accepted; convert it with"),
        "lil": (X.tolil(), TypeError, r"X\.tocsr\(\)"),
        "duplicates": (duplicated, ValueError, r"X: a row holds the same column twice"),
        "nan": (with_nan, ValueError, r"X: contains NaN or infinity"),
        "inf": (with_inf, ValueError, r"X: contains NaN or infinity"),
        "columns": (X[:, :-1], ValueError, rf"X: expected shape \(n_samples, {N_IN}\), got"),
        "no-rows": (X[:0], ValueError, r"X: empty batch"),
        "complex": (complex_X, TypeError, r"X: expected real numbers .* got dtype complex128"),
        "index-dtype": (wide_indices, TypeError, r"X: expected int32 or int64 indices"),
        "structure": (broken, ValueError, r"X: the sparse structure is broken"),
    }


BAD = bad_inputs()


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_sparse_inputs_get_one_clear_error_each(case):
    X, error, message = case
    net = network()
    before = net.params.copy()
    with pytest.raises(error, match=message):
        net.predict(X)
    with pytest.raises(error, match=message):
        net.fit(X, np.zeros(X.shape[0], dtype=int), epochs=1)
    assert np.array_equal(net.params, before)


def test_bad_validation_data_is_named():
    X, labels = sparse_problem()
    with_nan = X.copy()
    with_nan.data[0] = np.nan
    with pytest.raises(ValueError, match=r"validation_data\[0\]: contains NaN"):
        network().fit(X, labels, epochs=1, validation_data=(with_nan, labels))


def test_sparse_rows_are_never_made_dense():
    X, _ = sparse_problem()
    rows = _sparse.inputs(X, N_IN, np.dtype(np.float64))
    with pytest.raises(TypeError, match="never made dense"):
        np.asarray(rows)
    picked = rows[np.array([5, 0, 5])]
    assert np.array_equal(sparse.csr_matrix((picked.data, picked.indices, picked.indptr),
                                            shape=picked.shape).toarray(),
                          X.toarray()[[5, 0, 5]])  # fmt: skip
    sliced = rows[10:20]
    assert np.array_equal(
        sparse.csr_matrix(
            (sliced.data, sliced.indices, sliced.indptr), shape=sliced.shape
        ).toarray(),
        X.toarray()[10:20],
    )


def test_the_core_checks_the_structure_itself():
    """What reaches the core is checked again there: no read outside the arrays."""
    X, _ = sparse_problem()
    rows = _sparse.inputs(X, N_IN, np.dtype(np.float64))
    indices = rows.indices.copy()
    indices[7] = -1
    bad = _sparse.SparseRows(rows.data, indices, rows.indptr, N_IN)
    net = network()
    out = np.empty((X.shape[0], N_OUT))
    with pytest.raises(ValueError, match=r"X: column index -1 is outside \[0, 40\)"):
        net._core.predict(net.params, bad, out)
    indptr = rows.indptr.copy()
    indptr[3] = indptr[4] + 1
    bad = _sparse.SparseRows(rows.data, rows.indices, indptr, N_IN)
    with pytest.raises(ValueError, match=r"X: indptr decreases at row"):
        net._core.predict(net.params, bad, out)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("form", ["csr_matrix", "csc_array"])
def test_the_classifier_fits_sparse_as_dense(form):
    from deltaprop.sklearn import DeltapropClassifier

    X, labels = sparse_problem()
    X = getattr(sparse, form)(X)
    options = dict(hidden_layer_sizes=(6,), max_iter=3, batch_size=8, random_state=0)
    on_sparse = DeltapropClassifier(early_stopping=True, **options).fit(X, labels)
    on_dense = DeltapropClassifier(early_stopping=True, **options).fit(X.toarray(), labels)
    assert_close(on_sparse.network_.params, on_dense.network_.params, rtol=1e-10)
    assert on_sparse.validation_scores_ == pytest.approx(on_dense.validation_scores_, rel=1e-10)
    assert_close(on_sparse.predict_proba(X), on_dense.predict_proba(X.toarray()), rtol=1e-10)
    assert on_sparse.__sklearn_tags__().input_tags.sparse


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_regressor_fits_sparse_as_dense_with_lbfgs_and_partial_fit():
    from deltaprop.sklearn import DeltapropRegressor

    X, _ = sparse_problem()
    y = np.random.default_rng(2).normal(size=X.shape[0])
    options = dict(hidden_layer_sizes=(6,), max_iter=5, random_state=0, optimizer="lbfgs")
    on_sparse = DeltapropRegressor(**options).fit(X, y)
    on_dense = DeltapropRegressor(**options).fit(X.toarray(), y)
    assert_close(on_sparse.predict(X), on_dense.predict(X.toarray()), rtol=1e-10)
    stochastic = dict(hidden_layer_sizes=(6,), batch_size=8, random_state=0)
    on_sparse = DeltapropRegressor(**stochastic).partial_fit(X, y)
    on_dense = DeltapropRegressor(**stochastic).partial_fit(X.toarray(), y)
    assert_close(on_sparse.network_.params, on_dense.network_.params, rtol=1e-10)


def test_sgd_step_and_the_gradient_check_take_sparse_rows():
    X, labels = sparse_problem(10)
    on_sparse, on_dense = pair()
    cost = on_sparse.sgd_step(X, labels, lr=0.5, lmbda=1.0)
    assert cost == pytest.approx(on_dense.sgd_step(X.toarray(), labels, lr=0.5, lmbda=1.0))
    assert_close(on_sparse.params, on_dense.params, rtol=1e-12)
    check = on_sparse.gradient_check(X, labels, entries=30)
    expected = on_dense.gradient_check(X.toarray(), labels, entries=30)
    assert check.max_error < 1e-6
    assert check.max_error == pytest.approx(expected.max_error, rel=1e-3, abs=1e-9)


@pytest.mark.parametrize("training", ["momentum", "adam"])
def test_a_sparse_run_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(tmp_path, training):
    """Momentum's lazy rows of W^1 have caught up in the checkpoint (its velocity is whole)."""
    X, labels = sparse_problem()
    options = {"batch_size": 8, "seed": 5, "standardize": True, **TRAININGS[training]}
    whole = network()
    whole.fit(X, labels, epochs=4, checkpoint=tmp_path / "whole.npz", **options)
    first = network()
    first.fit(X, labels, epochs=2, checkpoint=tmp_path / "run.npz", **options)
    resumed = network()
    resumed.fit(X, labels, epochs=4, checkpoint=tmp_path / "run.npz", resume=True, **options)
    np.testing.assert_array_equal(resumed.params, whole.params)
    assert not np.array_equal(resumed.params, first.params)  # the last two epochs trained


def test_a_network_trained_on_sparse_rows_saves_loads_and_pickles(tmp_path):
    import pickle

    X, labels = sparse_problem()
    net = network()
    net.fit(X, labels, epochs=2, batch_size=8, standardize=True, seed=5)
    net.save(tmp_path / "model.npz")
    for copy in (dp.load(tmp_path / "model.npz"), pickle.loads(pickle.dumps(net))):
        np.testing.assert_array_equal(copy.input_scale, net.input_scale)
        np.testing.assert_array_equal(copy.predict(X), net.predict(X))
        np.testing.assert_array_equal(copy.predict(X.tocsc()), net.predict(X))
