"""The scikit-learn estimators: scikit-learn's own estimator checks, then their use in
pipelines and searches, pickling, partial_fit, warm_start, sample weights and attributes."""

from __future__ import annotations

import importlib
import pickle
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import deltaprop as dp
from deltaprop.sklearn import DeltapropClassifier, DeltapropRegressor

# Small networks, seeded, so that the checks are quick and reproducible. lr 0.01: the checks'
# accuracy and R^2 thresholds must be met within max_iter epochs.
SMALL = dict(hidden_layer_sizes=(10,), max_iter=100, learning_rate_init=0.01, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = dp.datasets.load_digits()
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def blobs():
    """Three well-separated classes in 4 dimensions."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0, 0], [4, 0, 4, 0], [0, 4, 0, 4]], dtype=float)
    y = np.repeat(np.arange(3), 40)
    X = centres[y] + rng.normal(size=(len(y), 4))
    return X, y


# MLP's own checks raise ConvergenceWarning too: the checks fit for a fixed, small max_iter.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [
        DeltapropClassifier(**SMALL),
        DeltapropRegressor(**SMALL),
        DeltapropClassifier(optimizer="lbfgs", **SMALL),
        DeltapropRegressor(optimizer="lbfgs", **SMALL),
        DeltapropClassifier(optimizer="rprop", **SMALL),
        DeltapropClassifier(standardize=True, **SMALL),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_pipeline_on_digits_is_accurate(digits):
    X_train, X_test, y_train, y_test = digits
    model = make_pipeline(StandardScaler(), DeltapropClassifier(max_iter=50, random_state=0))
    with pytest.warns(ConvergenceWarning):
        model.fit(X_train, y_train)
    assert model.score(X_test, y_test) > 0.9
    proba = model.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_allclose(model.predict_log_proba(X_test), np.log(proba))


def test_grid_search_in_two_processes(blobs):
    X, y = blobs
    search = GridSearchCV(
        DeltapropClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0),
        {"learning_rate_init": [1e-4, 3e-2]},
        cv=3,
        n_jobs=2,
        error_score="raise",
    )
    # The workers' ConvergenceWarnings stay in the workers; the refit in this process warns.
    with pytest.warns(ConvergenceWarning):
        search.fit(X, y)
    assert search.best_params_ == {"learning_rate_init": 3e-2}
    assert search.best_score_ > 0.9
    assert search.best_estimator_.score(X, y) > 0.9


@pytest.mark.parametrize("fitted", [False, True], ids=["unfitted", "fitted"])
def test_pickle_round_trip(blobs, fitted):
    X, y = blobs
    model = DeltapropClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    if fitted:
        with pytest.warns(ConvergenceWarning):
            model.fit(X, y)
    restored = pickle.loads(pickle.dumps(model))
    assert restored.get_params() == model.get_params()
    if not fitted:
        assert not hasattr(restored, "network_")
        return
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
    assert restored.network_ is not model.network_
    assert restored.network_.optimizer.step == model.network_.optimizer.step
    # Training resumes from the pickled optimizer state exactly as from the original.
    for estimator in (model, restored):
        estimator.partial_fit(X, y)
    np.testing.assert_array_equal(restored.network_.params, model.network_.params)


def _count_epochs(epoch, metrics):
    """A callback that pickles (a module's function); never stops."""
    return False


def test_pickled_curves_and_callbacks_continue_as_the_original_s(blobs):
    """validation_loss_curve_ and callbacks survive a pickle, and a warm start after it
    extends the curves as it extends the original's."""
    X, y = blobs
    model = DeltapropClassifier(
        hidden_layer_sizes=(6,), max_iter=3, early_stopping=True, n_iter_no_change=50,
        warm_start=True, callbacks=[_count_epochs], random_state=0,
    )  # fmt: skip
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    restored = pickle.loads(pickle.dumps(model))
    assert restored.callbacks == [_count_epochs]
    assert restored.validation_loss_curve_ == model.validation_loss_curve_
    assert len(restored.validation_loss_curve_) == 3
    for estimator in (model, restored):
        with pytest.warns(ConvergenceWarning):
            estimator.fit(X, y)
    assert len(restored.validation_loss_curve_) == 6
    assert restored.validation_loss_curve_ == model.validation_loss_curve_
    assert restored.validation_scores_ == model.validation_scores_
    np.testing.assert_array_equal(restored.network_.params, model.network_.params)


def test_clone_is_unfitted_with_the_same_params(blobs):
    X, y = blobs
    model = DeltapropRegressor(hidden_layer_sizes=(3, 2), alpha=0.5, max_iter=2, random_state=1)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "network_") and not hasattr(copy, "coefs_")


def test_partial_fit_needs_classes_first_then_trains_one_epoch_per_call(blobs):
    X, y = blobs
    model = DeltapropClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.05, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X, y)
    # The first batch holds classes 0 and 1 only; class 2 arrives later.
    first = y < 2
    model.partial_fit(X[first], y[first], classes=[0, 1, 2])
    assert model.n_iter_ == 1 and model.t_ == first.sum()
    assert model.predict_proba(X).shape == (len(X), 3)
    for _ in range(20):
        model.partial_fit(X, y)
    assert model.n_iter_ == 21 and len(model.loss_curve_) == 21
    assert model.t_ == first.sum() + 20 * len(X)
    assert model.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not among the classes"):
        model.partial_fit(X, np.where(y == 2, 7, y))
    with pytest.raises(ValueError, match="not the same"):
        model.partial_fit(X, y, classes=[0, 1])


def test_partial_fit_refuses_early_stopping(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="early_stopping"):
        DeltapropClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_warm_start_continues_training(blobs):
    X, y = blobs
    model = DeltapropClassifier(
        hidden_layer_sizes=(8,), max_iter=5, warm_start=True, random_state=0
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    weights, curve, step = (
        model.coefs_[0].copy(),
        list(model.loss_curve_),
        model.network_.optimizer.step,
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    assert model.n_iter_ == 10 and model.loss_curve_[:5] == curve
    assert len(model.loss_curve_) == 10 and model.t_ == 10 * len(X)
    assert model.network_.optimizer.step == 2 * step  # Adam's state carried on
    assert not np.array_equal(model.coefs_[0], weights)
    # Without warm_start a second fit starts again from the same initial weights.
    cold = DeltapropClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    for _ in range(2):
        with pytest.warns(ConvergenceWarning):
            cold.fit(X, y)
    assert cold.n_iter_ == 5 and cold.loss_curve_ == curve


def test_stops_when_the_loss_stops_improving(blobs):
    X, y = blobs
    model = DeltapropClassifier(
        hidden_layer_sizes=(8,),
        learning_rate_init=0.05,
        tol=0.5,
        n_iter_no_change=3,
        random_state=0,
    )
    model.fit(X, y)  # no ConvergenceWarning: it converged
    assert model.n_iter_ < model.max_iter
    # The last n_iter_no_change epochs did not beat the best of the earlier ones by tol.
    assert min(model.loss_curve_[-3:]) > min(model.loss_curve_[:-3]) - 0.5
    assert model.best_loss_ == min(model.loss_curve_)
    assert model.validation_scores_ is None and model.best_validation_score_ is None


def test_early_stopping_keeps_the_best_validation_weights(blobs):
    X, y = blobs
    model = DeltapropClassifier(
        hidden_layer_sizes=(8,),
        learning_rate_init=0.02,
        early_stopping=True,
        n_iter_no_change=4,
        random_state=0,
    )
    model.fit(X, y)
    assert model.n_iter_ < model.max_iter
    assert len(model.validation_scores_) == model.n_iter_
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.best_loss_ is None
    # The held-out split: seeded by the second of the seeds drawn from random_state.
    split_seed = np.random.RandomState(0).randint(2**31 - 1, size=2)[1]
    _, X_val, _, y_val = train_test_split(X, y, test_size=0.1, random_state=split_seed, stratify=y)
    assert model.score(X_val, y_val) == model.best_validation_score_


def test_zero_weights_on_a_class_change_predictions(blobs):
    X, y = blobs
    model = DeltapropClassifier(
        hidden_layer_sizes=(8,), learning_rate_init=0.05, max_iter=60, random_state=0
    )
    with pytest.warns(ConvergenceWarning):
        plain = model.fit(X, y).predict(X)
    assert (plain == 2).mean() > 0.3
    weights = np.where(y == 2, 0.0, 1.0)
    with pytest.warns(ConvergenceWarning):
        weighted = clone(model).fit(X, y, sample_weight=weights).predict(X)
    assert not (weighted == 2).any()


def test_integer_weights_are_repeated_rows(blobs):
    X, y = blobs
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 4, size=len(y))
    # Full batches: the weighted epoch and the epoch on repeated rows are the same sums.
    model = DeltapropRegressor(
        hidden_layer_sizes=(5,), max_iter=20, batch_size=1000, random_state=0
    )
    target = X[:, 0] - 2 * X[:, 1]
    with pytest.warns(ConvergenceWarning):
        weighted = clone(model).fit(X, target, sample_weight=weights)
    with pytest.warns(ConvergenceWarning):
        repeated = clone(model).fit(np.repeat(X, weights, axis=0), np.repeat(target, weights))
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-9)


def test_string_labels(blobs):
    X, y = blobs
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    model = DeltapropClassifier(
        hidden_layer_sizes=(8,), learning_rate_init=0.05, max_iter=40, random_state=0
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X, names)
    assert list(model.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(model.predict(X)) == set(names)
    assert model.score(X, names) > 0.95


def test_binary_classification_has_two_probability_columns(blobs):
    X, y = blobs
    labels = np.where(y == 0, -1, 1)
    model = DeltapropClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, labels)
    assert list(model.classes_) == [-1, 1]
    assert model.predict_proba(X).shape == (len(X), 2)
    assert model.n_outputs_ == 2 and model.out_activation_ == "softmax"


def test_multilabel_targets_get_sigmoid_outputs(blobs):
    X, y = blobs
    Y = np.stack([y == 1, y >= 1, X[:, 0] > 2], axis=1).astype(int)
    model = DeltapropClassifier(
        hidden_layer_sizes=(8,), learning_rate_init=0.05, max_iter=80, random_state=0
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X, Y)
    assert model.out_activation_ == "logistic" and model.network_.cost_name == "cross_entropy"
    assert list(model.classes_) == [0, 1, 2]
    assert model.predict(X).shape == Y.shape and model.predict_proba(X).shape == Y.shape
    assert model.score(X, Y) > 0.85  # subset accuracy


def test_regressor_fits_a_smooth_function():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(400, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2
    model = DeltapropRegressor(
        hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=300, random_state=0
    )
    model.fit(X[:300], y[:300])
    assert model.n_iter_ < 300  # converged
    assert model.predict(X).shape == (400,)
    assert model.score(X[300:], y[300:]) > 0.9
    # Two targets at once: 2-D predictions, one output unit each.
    Y = np.stack([y, -y], axis=1)
    with pytest.warns(ConvergenceWarning):
        two = clone(model).set_params(max_iter=5).fit(X, Y)
    assert two.predict(X).shape == (400, 2) and two.n_outputs_ == 2


def test_coefs_are_the_transposed_network_weights(blobs):
    X, y = blobs
    model = DeltapropClassifier(hidden_layer_sizes=(7, 5), max_iter=2, random_state=0)
    assert not hasattr(model, "coefs_")
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    net = model.network_
    assert net.sizes == (4, 7, 5, 3) and model.n_layers_ == 4 and model.n_features_in_ == 4
    assert [c.shape for c in model.coefs_] == [(4, 7), (7, 5), (5, 3)]
    assert [b.shape for b in model.intercepts_] == [(7,), (5,), (3,)]
    for coef, W, intercept, b in zip(model.coefs_, net.weights, model.intercepts_, net.biases):
        np.testing.assert_array_equal(coef, W.T)
        np.testing.assert_array_equal(intercept, b)
    # The forward pass in scikit-learn's layout gives predict_proba.
    a = X
    for coef, intercept in zip(model.coefs_[:-1], model.intercepts_[:-1]):
        a = np.maximum(a @ coef + intercept, 0)
    z = a @ model.coefs_[-1] + model.intercepts_[-1]
    softmax = np.exp(z - z.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(X), softmax, rtol=1e-12)
    # Assigning coefs_ / intercepts_ copies into the network, shapes checked.
    model.coefs_ = [np.zeros_like(coef) for coef in model.coefs_]
    model.intercepts_ = [np.zeros_like(b) for b in model.intercepts_[:-1]] + [np.arange(3.0)]
    assert not net.params[:-3].any() and list(net.biases[-1]) == [0, 1, 2]
    np.testing.assert_allclose(
        model.predict_proba(X[:1]), [np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum()]
    )
    with pytest.raises(ValueError, match="shapes"):
        model.coefs_ = [coef.T for coef in model.coefs_]


def test_alpha_is_l2_on_the_loss_curve(blobs):
    """alpha / batch_size on the gradient, and 0.5 alpha / batch_size ||W||^2 on the loss."""
    X, y = blobs
    options = dict(
        hidden_layer_sizes=(4,), max_iter=1, batch_size=40, shuffle=False, random_state=0
    )
    with pytest.warns(ConvergenceWarning):
        model = DeltapropClassifier(alpha=2.0, **options).fit(X, y)
    # The same epoch by hand with Network.fit and Adam's weight_decay = alpha / batch_size.
    net = dp.Network(
        [4, 4, 3],
        activation="relu",
        output="softmax",
        cost="log_likelihood",
        init="he",
        seed=np.random.RandomState(0).randint(2**31 - 1),
    )
    history = net.fit(
        X,
        y,
        epochs=1,
        batch_size=40,
        shuffle=False,
        optimizer=dp.optim.Adam(1e-3, weight_decay=2.0 / 40),
    )
    np.testing.assert_allclose(model.network_.params, net.params, rtol=1e-12)
    penalty = 0.5 * 2.0 / 40 * sum((W**2).sum() for W in net.weights)
    assert model.loss_curve_ == pytest.approx([history["cost"][0] + penalty], rel=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    ("batch_size", "weighted"), [(20, False), (60, True)], ids=["minibatch", "weighted-full"]
)
def test_sgd_epochs_match_mlp_regressor(batch_size, weighted):
    """The oracle for alpha and the layout: MLPRegressor's plain SGD from the same weights.

    The two agree exactly when every batch has the same size (or, with weights, when the
    batch is the whole training set); see the module documentation."""
    from sklearn.neural_network import MLPRegressor

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    y = np.tanh(X[:, 0]) + X[:, 1] * X[:, 2]
    weights = rng.integers(0, 4, size=60).astype(float) if weighted else None
    common = dict(batch_size=batch_size, alpha=0.3, shuffle=False, warm_start=True)
    mlp = MLPRegressor(
        hidden_layer_sizes=(5,),
        solver="sgd",
        momentum=0.0,
        learning_rate_init=0.05,
        max_iter=1,
        random_state=0,  # its initial weights; both continue from them
        **common,
    )
    ours = DeltapropRegressor(
        hidden_layer_sizes=(5,),
        optimizer="sgd",
        learning_rate_init=0.05,
        max_iter=1,
        random_state=0,
        **common,
    )
    # One epoch each to create the networks, then both continue from MLP's weights.
    mlp.fit(X, y)
    ours.fit(X, y)
    ours.coefs_, ours.intercepts_ = mlp.coefs_, mlp.intercepts_
    mlp.set_params(max_iter=5).fit(X, y, sample_weight=weights)
    ours.set_params(max_iter=5).fit(X, y, sample_weight=weights)
    for actual, expected in zip(ours.coefs_ + ours.intercepts_, mlp.coefs_ + mlp.intercepts_):
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.predict(X), mlp.predict(X), rtol=1e-10)
    # Both loss curves hold the data loss plus the L2 penalty, so they agree too: within the
    # epoch MLP adds each batch's penalty before its update, here the epoch's end counts.
    np.testing.assert_allclose(ours.loss_curve_[-5:], mlp.loss_curve_[-5:], rtol=2e-3)


def test_invalid_hyperparameters_are_reported_at_fit(blobs):
    X, y = blobs
    model = DeltapropClassifier(activation="softplus")  # accepted until fit
    with pytest.raises(ValueError, match="activation"):
        model.fit(X, y)
    with pytest.raises(ValueError, match="learning_rate_init"):
        DeltapropRegressor(learning_rate_init=0).fit(X, y)
    with pytest.raises(ValueError, match="optimizer"):
        DeltapropRegressor(optimizer="adagrad").fit(X, y)
    with pytest.raises(ValueError, match="2 classes"):
        DeltapropClassifier().fit(X, np.zeros(len(X)))


@pytest.mark.parametrize(
    ("activation", "error"),
    [
        (["relu"], r"activation: expected one name or one per hidden layer \(2 for "
                   r"hidden_layer_sizes=\(8, 6\)\), got 1"),
        (("relu", "tanh", "relu"), r"one per hidden layer \(2 .*got 3"),
        (["relu", "softplus"], r"activation\[1\] \(hidden layer 2\): expected one of logistic"),
        (["softmax", "relu"], r"activation\[0\] \(hidden layer 1\)"),
        ([["relu"], "tanh"], r"activation\[0\]"),
    ],
)  # fmt: skip
def test_invalid_per_layer_activations_are_reported_at_fit(blobs, activation, error):
    X, y = blobs
    model = DeltapropClassifier(hidden_layer_sizes=(8, 6), activation=activation)
    assert model.get_params()["activation"] is activation  # kept as given
    with pytest.raises(ValueError, match=error):
        model.fit(X, y)


@pytest.mark.parametrize("estimator", [DeltapropClassifier, DeltapropRegressor])
def test_an_activation_per_hidden_layer(blobs, estimator):
    X, y = blobs
    activation = ["logistic", "relu", "tanh"]
    model = estimator(hidden_layer_sizes=(8, 7, 6), activation=activation, max_iter=60,
                      learning_rate_init=0.02, random_state=0)  # fmt: skip
    copy = clone(model)
    assert copy.get_params()["activation"] == activation and copy.activation is not activation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.network_.activations == ("sigmoid", "relu", "tanh")
    assert model.score(X, y) > 0.8
    back = pickle.loads(pickle.dumps(model))
    assert back.network_.architecture == model.network_.architecture
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(model, {"activation": [activation, "tanh"]}, cv=2).fit(X, y)
    assert search.best_params_["activation"] in (activation, "tanh")


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw"])
@pytest.mark.parametrize("activation", ["logistic", "tanh", "identity"])
def test_every_optimizer_and_activation_trains(blobs, optimizer, activation):
    X, y = blobs
    model = DeltapropClassifier(
        hidden_layer_sizes=(8,),
        activation=activation,
        optimizer=optimizer,
        learning_rate_init=0.05 if optimizer in ("adam", "adamw") else 0.2,
        max_iter=40,
        dtype="float32",
        random_state=0,
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    assert model.network_.dtype == np.float32 and model.network_.optimizer.name == optimizer
    assert model.score(X, y) > 0.9


def test_import_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.base", None)  # "import sklearn.base" fails
    monkeypatch.delitem(sys.modules, "deltaprop.sklearn")
    with pytest.raises(ImportError, match=r"pip install 'deltaprop\[sklearn\]'"):
        importlib.import_module("deltaprop.sklearn")


@pytest.mark.parametrize("early_stopping", [False, True], ids=["loss", "validation"])
@pytest.mark.parametrize("Estimator", [DeltapropClassifier, DeltapropRegressor])
def test_a_huge_learning_rate_gives_no_numpy_warning(Estimator, early_stopping):
    """Weights that grow past 1e154 make the loss overflow: no RuntimeWarning may escape
    (training ends with DivergenceError or a ConvergenceWarning)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 3, 200)
    targets = y * 1e5 if Estimator is DeltapropRegressor else y
    model = Estimator(
        learning_rate_init=1e10, optimizer="sgd", max_iter=20, early_stopping=early_stopping
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X, targets)
        except dp.DivergenceError:
            pass
    assert [w.message for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_lbfgs_is_mlps_lbfgs_solver_on_the_digits():
    """optimizer="lbfgs" trains as MLPClassifier(solver="lbfgs") does: same loss (MLP's,
    with alpha), iterations per max_iter, and an accuracy within noise of MLP's."""
    from sklearn.neural_network import MLPClassifier

    X, y = dp.datasets.load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    options = dict(hidden_layer_sizes=(30,), alpha=1e-3, max_iter=150, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = DeltapropClassifier(optimizer="lbfgs", **options).fit(X_train, y_train)
        theirs = MLPClassifier(solver="lbfgs", **options).fit(X_train, y_train)
    assert ours.n_iter_ == len(ours.loss_curve_) <= 150
    assert all(np.diff(ours.loss_curve_) <= 1e-12)
    assert ours.score(X_test, y_test) > theirs.score(X_test, y_test) - 0.02


def test_lbfgs_refuses_partial_fit_and_early_stopping(blobs):
    X, y = blobs
    assert not hasattr(DeltapropClassifier(optimizer="lbfgs"), "partial_fit")
    assert hasattr(DeltapropClassifier(optimizer="rprop"), "partial_fit")
    with pytest.raises(ValueError, match="early_stopping"):
        DeltapropClassifier(optimizer="lbfgs", early_stopping=True).fit(X, y)


# ------------------------------------------------------------------ class weights
def _imbalanced_labels():
    """Blobs of three classes in proportions 6:2:1, labelled by strings."""
    rng = np.random.default_rng(21)
    y = rng.choice(3, size=90, p=[6 / 9, 2 / 9, 1 / 9])
    X = np.array([[0, 0], [3, 0], [0, 3]], dtype=float)[y] + rng.normal(size=(90, 2))
    return X, np.array(["cat", "dog", "eel"])[y]


CLASS_WEIGHTED = dict(hidden_layer_sizes=(6,), max_iter=4, batch_size=16, random_state=0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
@pytest.mark.parametrize(
    "class_weight", ["balanced", {"dog": 3.0, "eel": 0.5}], ids=["balanced", "dict"]
)
def test_class_weight_is_scikit_learns_sample_weight_of_the_labels(class_weight, optimizer):
    from sklearn.utils.class_weight import compute_sample_weight

    X, y = _imbalanced_labels()
    settings = dict(CLASS_WEIGHTED, optimizer=optimizer)
    weighed = DeltapropClassifier(class_weight=class_weight, **settings).fit(X, y)
    explicit = DeltapropClassifier(**settings).fit(
        X, y, sample_weight=compute_sample_weight(class_weight, y)
    )
    assert np.array_equal(weighed.network_.params, explicit.network_.params)
    plain = DeltapropClassifier(**settings).fit(X, y)
    assert not np.array_equal(weighed.network_.params, plain.network_.params)
    sample_weight = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    both = DeltapropClassifier(class_weight=class_weight, **settings).fit(X, y, sample_weight)
    product = sample_weight * compute_sample_weight(class_weight, y)
    multiplied = DeltapropClassifier(**settings).fit(X, y, sample_weight=product)
    assert np.array_equal(both.network_.params, multiplied.network_.params)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_class_weight_of_a_multilabel_target_weighs_each_column():
    from sklearn.utils.class_weight import compute_sample_weight

    rng = np.random.default_rng(22)
    X = rng.normal(size=(60, 3))
    Y = (rng.random((60, 3)) < [0.5, 0.2, 0.8]).astype(int)
    weighed = DeltapropClassifier(class_weight="balanced", **CLASS_WEIGHTED).fit(X, Y)
    explicit = DeltapropClassifier(**CLASS_WEIGHTED).fit(
        X, Y, sample_weight=compute_sample_weight("balanced", Y)
    )
    assert np.array_equal(weighed.network_.params, explicit.network_.params)
    columns = [{0: 1.0, 1: 2.0}, {1: 5.0}, {0: 0.5}]
    weighed = DeltapropClassifier(class_weight=columns, **CLASS_WEIGHTED).fit(X, Y)
    explicit = DeltapropClassifier(**CLASS_WEIGHTED).fit(
        X, Y, sample_weight=compute_sample_weight(columns, Y)
    )
    assert np.array_equal(weighed.network_.params, explicit.network_.params)
    with pytest.raises(ValueError, match="class_weight: a multilabel target is weighed per"):
        DeltapropClassifier(class_weight={1: 2.0}, **CLASS_WEIGHTED).fit(X, Y)


@pytest.mark.parametrize(
    ("class_weight", "error", "message"),
    [
        ({"fox": 1.0}, ValueError, r"class_weight: unknown class 'fox': the classes are \['cat'"),
        ({"dog": -1.0}, ValueError, r"class_weight\['dog'\]"),
        ({"dog": np.nan}, ValueError, r"class_weight\['dog'\]"),
        ({"dog": np.inf}, ValueError, r"class_weight\['dog'\]"),
        ("auto", ValueError, "class_weight: expected None, 'balanced'"),
        (2.0, TypeError, "class_weight: expected None, 'balanced'"),
        ([{0: 1.0}], ValueError, "class_weight: a list weighs the columns of a multilabel"),
    ],
)
def test_invalid_class_weight_of_the_classifier_names_it(class_weight, error, message):
    X, y = _imbalanced_labels()
    with pytest.raises(error, match=message):
        DeltapropClassifier(class_weight=class_weight, **CLASS_WEIGHTED).fit(X, y)


def test_partial_fit_refuses_balanced_and_takes_a_dict_of_labels():
    from sklearn.utils.class_weight import compute_sample_weight

    X, y = _imbalanced_labels()
    classes = ["cat", "dog", "eel"]
    for class_weight in ("balanced", [{0: 1.0}, "balanced"]):
        model = DeltapropClassifier(class_weight=class_weight, **CLASS_WEIGHTED)
        with pytest.raises(
            ValueError, match="class_weight: 'balanced' is not supported by partial"
        ):
            model.partial_fit(X, y, classes=classes)
    weights = {"cat": 0.25, "eel": 4.0}
    weighed = DeltapropClassifier(class_weight=weights, **CLASS_WEIGHTED)
    explicit = DeltapropClassifier(**CLASS_WEIGHTED)
    for batch in (slice(0, 45), slice(45, 90)):
        weighed.partial_fit(X[batch], y[batch], classes=classes)
        explicit.partial_fit(
            X[batch], y[batch], classes=classes,
            sample_weight=compute_sample_weight(weights, y[batch]),
        )  # fmt: skip
    assert np.array_equal(weighed.network_.params, explicit.network_.params)


def note(epoch, metrics):
    """A callback that pickles (a module-level function)."""
    return False


def test_class_weight_and_callbacks_survive_clone_and_set_params():
    callbacks = [note]
    model = DeltapropClassifier(class_weight={"dog": 2.0}, callbacks=callbacks, max_iter=3)
    assert model.get_params()["class_weight"] == {"dog": 2.0}
    assert model.get_params()["callbacks"] is callbacks  # kept as given
    copy = clone(model)
    assert copy.get_params()["class_weight"] == {"dog": 2.0}
    assert copy.callbacks == [note] and copy.callbacks[0] is note
    assert copy.set_params(class_weight="balanced").class_weight == "balanced"
    assert "class_weight" not in DeltapropRegressor().get_params()  # as in scikit-learn
    assert "callbacks" in DeltapropRegressor().get_params()
    assert pickle.loads(pickle.dumps(copy)).get_params()["class_weight"] == "balanced"


# ------------------------------------------------------------------ curves and callbacks
def _validation_split(X, y, random_state, fraction=0.1):
    """The estimators' early-stopping split: their second seed, stratified for labels."""
    from sklearn.utils import check_random_state

    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max, size=3)[1]
    return train_test_split(X, y, test_size=fraction, random_state=int(seed), stratify=y)


def test_validation_loss_curve_is_the_log_loss_of_the_split_each_epoch(blobs):
    from sklearn.metrics import log_loss

    X, y = blobs
    _, X_val, _, y_val = _validation_split(X, y, random_state=0)
    seen = []

    def validation_log_loss(epoch, metrics):
        proba = model.network_.predict(X_val)
        seen.append((epoch, log_loss(y_val, proba, labels=[0, 1, 2]), metrics["val_loss"]))

    model = DeltapropClassifier(
        hidden_layer_sizes=(8,), alpha=0.0, early_stopping=True, max_iter=6, random_state=0,
        n_iter_no_change=100, callbacks=validation_log_loss, learning_rate_init=0.01,
    )  # fmt: skip
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    assert len(model.validation_loss_curve_) == len(model.validation_scores_) == model.n_iter_
    assert len(model.loss_curve_) == model.n_iter_ == 6
    assert [epoch for epoch, _, _ in seen] == list(range(6))
    np.testing.assert_allclose(
        [loss for _, loss, _ in seen], model.validation_loss_curve_, rtol=1e-12
    )
    assert [given for _, _, given in seen] == model.validation_loss_curve_
    assert model.validation_loss_curve_[-1] < model.validation_loss_curve_[0]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("Estimator", [DeltapropClassifier, DeltapropRegressor])
def test_validation_loss_curve_only_with_a_validation_split(blobs, Estimator):
    X, y = blobs
    model = Estimator(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    assert model.validation_loss_curve_ is None and model.validation_scores_ is None
    model.set_params(early_stopping=True, n_iter_no_change=50).fit(X, y)
    assert len(model.validation_loss_curve_) == model.n_iter_ == 3
    assert all(np.isfinite(model.validation_loss_curve_))
    model.set_params(optimizer="lbfgs", early_stopping=False).fit(X, y)
    assert model.validation_loss_curve_ is None


def test_callbacks_are_called_once_per_epoch_with_the_estimators_epoch(blobs):
    X, y = blobs
    calls = []
    model = DeltapropClassifier(
        hidden_layer_sizes=(4,), max_iter=4, random_state=0, n_iter_no_change=50,
        callbacks=[lambda epoch, metrics: calls.append((epoch, dict(metrics)))],
    )  # fmt: skip
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    assert [epoch for epoch, _ in calls] == [0, 1, 2, 3]
    assert [metrics["loss"] for _, metrics in calls] == model.loss_curve_
    assert {"loss", "cost", "lr", "time"} <= set(calls[0][1])
    for _ in range(2):  # partial_fit: one epoch each, counted on
        model.partial_fit(X, y)
    assert [epoch for epoch, _ in calls] == [0, 1, 2, 3, 4, 5]
    calls.clear()
    with pytest.warns(ConvergenceWarning):
        model.set_params(optimizer="lbfgs", max_iter=3).fit(X, y)  # a call per iteration
    assert len(calls) == model.n_iter_ and "loss" in calls[0][1]


def test_a_callback_that_returns_true_stops_without_a_convergence_warning(blobs):
    X, y = blobs
    stop_at_2 = lambda epoch, metrics: epoch == 2  # noqa: E731
    model = DeltapropRegressor(hidden_layer_sizes=(4,), max_iter=50, callbacks=stop_at_2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(X, y.astype(float))
    assert model.n_iter_ == 3 and len(model.loss_curve_) == 3


def test_a_callback_that_raises_propagates_with_the_completed_epochs(blobs):
    X, y = blobs

    def fails_at_1(epoch, metrics):
        if epoch == 1:
            raise RuntimeError("callback failed")

    model = DeltapropClassifier(hidden_layer_sizes=(4,), max_iter=10, callbacks=fails_at_1)
    with pytest.raises(RuntimeError, match="callback failed"):
        model.fit(X, y)
    assert model.n_iter_ == 2 and len(model.loss_curve_) == 2
    assert len(model.network_.history["cost"]) == 2  # as Network.fit leaves it
    with pytest.raises(TypeError, match="callbacks: expected callables"):
        DeltapropClassifier(callbacks=[1]).fit(X, y)


@pytest.mark.parametrize("Estimator", [DeltapropClassifier, DeltapropRegressor])
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_standardize_is_a_pipeline_with_a_standard_scaler(blobs, Estimator, optimizer):
    X, y = blobs
    X = X * [1.0, 100.0, 0.01, 1.0] + [0.0, 5e3, 1.0, -40.0]
    y = y if Estimator is DeltapropClassifier else X @ [1.0, 0.01, 100.0, 0.0]
    options = dict(hidden_layer_sizes=(6,), max_iter=8, random_state=0, optimizer=optimizer)
    standardized = Estimator(standardize=True, **options)
    pipeline = make_pipeline(StandardScaler(), Estimator(**options))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        standardized.fit(X, y)
        pipeline.fit(X, y)
    np.testing.assert_allclose(standardized.network_.input_mean, pipeline[0].mean_, rtol=1e-13)
    np.testing.assert_allclose(standardized.network_.input_scale, pipeline[0].scale_, rtol=1e-13)
    np.testing.assert_allclose(standardized.predict(X), pipeline.predict(X), rtol=1e-9)
    np.testing.assert_allclose(standardized.loss_curve_, pipeline[-1].loss_curve_, rtol=1e-9)


def test_partial_fit_and_warm_starts_keep_the_first_fits_scaling(blobs):
    X, y = blobs
    model = DeltapropClassifier((6,), standardize=True, random_state=0)
    model.partial_fit(X[:60] * 10, y[:60], classes=[0, 1, 2])
    mean = model.network_.input_mean
    np.testing.assert_allclose(mean, (X[:60] * 10).mean(axis=0), rtol=1e-13)
    model.partial_fit(X, y)
    assert model.network_.input_mean is mean
    warm = DeltapropClassifier((6,), standardize=True, warm_start=True, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
        mean = warm.network_.input_mean
        warm.fit(X * 3, y)
    assert warm.network_.input_mean is mean
    assert pickle.loads(pickle.dumps(warm)).network_.input_mean is not None
