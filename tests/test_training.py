"""Training runs: epochs against the reference, fit's options, dropout, schedules, early
stopping, callbacks, progress and sample weights, and training on the shipped digits."""

from __future__ import annotations

import errno
import inspect
import io
import sys

import numpy as np
import pytest

import deltaprop as dp
from conftest import (
    VALID_OUTPUT_COSTS,
    assert_close,
    random_targets,
    reference_call,
    softmax_problem,
)
from deltaprop import schedules


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


# ------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("batch_size", 0, ValueError),
        ("batch_size", -3, ValueError),
        ("batch_size", 2.0, TypeError),
        ("epochs", -1, ValueError),
        ("lr", 0.0, ValueError),
        ("lr", float("nan"), ValueError),
        ("lr", "fast", TypeError),
        ("lmbda", -1.0, ValueError),
        ("dropout", 1.0, ValueError),
        ("dropout", -0.1, ValueError),
        ("l1", -1.0, ValueError),
        ("validation_fraction", 1.0, ValueError),
        ("patience", 0, ValueError),
        ("callbacks", [3], TypeError),
        ("optimizer", "adagrad", ValueError),
        ("momentum", 1.5, ValueError),
        ("schedule", 3, TypeError),
    ],
)
def test_invalid_fit_options_are_refused_before_training(option, value, error):
    net, X, y = softmax_problem()
    before = net.params.copy()
    with pytest.raises(error, match=option):
        net.fit(X, y, **{"epochs": 1, "optimizer": "momentum", option: value})
    np.testing.assert_array_equal(net.params, before)


# ------------------------------------------------------------------ dropout
def test_dropout_masks_units_in_both_passes():
    # [1, k, 1], identity, W = 1, b = 0, x = 1, y = 0: one step with dropout p changes
    # W2_j and W1_j only for kept units, and by exactly 1/(1-p) times the undropped amount.
    k, p = 4000, 0.25
    weights = [np.ones((k, 1)), np.ones((1, k)) / k]
    biases = [np.zeros(k), np.zeros(1)]
    net = dp.Network.from_params(weights, biases, activation="identity", output="identity")
    net.fit(np.ones((1, 1)), np.zeros((1, 1)), epochs=1, batch_size=1, lr=1e-3, dropout=p)
    changed = net.weights[1][0] != 1 / k
    assert abs(changed.mean() - (1 - p)) < 0.03
    np.testing.assert_array_equal(net.weights[0][:, 0] != 1, changed)
    # z2 = sum_j mask_j / k, delta2 = z2, dW2_j = delta2 * mask_j.
    z2 = changed.sum() / (1 - p) / k
    np.testing.assert_allclose(net.weights[1][0][changed], 1 / k - 1e-3 * z2 / (1 - p), rtol=1e-12)


def test_dropout_is_seeded_and_off_at_prediction():
    def train(seed, dropout):
        net, X, y = softmax_problem()
        net.fit(X, y, epochs=3, batch_size=4, lr=0.1, dropout=dropout, seed=seed)
        return net

    a, b = train(1, 0.5), train(1, 0.5)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, train(2, 0.5).params)
    assert not np.array_equal(a.params, train(1, 0.0).params)
    X = softmax_problem()[1]
    np.testing.assert_array_equal(a.predict(X), a.predict(X))


def test_an_epoch_split_over_calls_equals_one_call():
    """The progress bar runs an epoch in pieces; masks and updates must not notice."""
    results = []
    for pieces in ([(0, 12)], [(0, 4), (4, 12)]):
        net, X, y = softmax_problem()
        net.fit(X, y, epochs=0, optimizer="momentum")  # binds the optimizer
        Y = np.eye(3)[y]
        order = np.random.default_rng(0).permutation(12)
        for start, stop in pieces:
            _, _, diverged = net.train_rows(
                X,
                Y,
                rows=order[start:stop],
                batch_size=4,
                l2=0.1,
                dropout=0.5,
                seed=99,
                first_batch=start // 4,
            )
            assert diverged is None
        results.append(np.concatenate([net.params, net.optimizer.state[0]]))
    np.testing.assert_array_equal(results[0], results[1])


# ------------------------------------------------------------------ schedules
def test_step_and_function_schedules_set_the_rate():
    net, X, y = softmax_problem()
    history = net.fit(X, y, epochs=5, lr=0.4, schedule=schedules.StepDecay(2, 0.5))
    assert history["lr"] == [0.4, 0.4, 0.2, 0.2, 0.1]
    history = net.fit(X, y, epochs=3, optimizer="sgd", schedule=lambda epoch: 0.1 / (epoch + 1))
    assert history["lr"] == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_adaptive_schedule_divides_by_five_after_a_stall():
    adaptive = schedules.Adaptive(patience=2, tol=0.0)
    history = {"cost": []}
    rates = []
    lr = 1.0
    for epoch, cost in enumerate([5.0, 4.0, 4.5, 4.2, 3.0, 3.5, 3.5]):
        lr = adaptive(epoch, lr, history)
        rates.append(lr)
        history["cost"].append(cost)
    assert rates == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.2, 0.2, 0.2])
    assert adaptive(7, lr, history) == pytest.approx(0.04)


# ------------------------------------------------------------------ stopping, callbacks
def overfitting_problem():
    rng = np.random.default_rng(2)
    net = dp.Network(
        [10, 40, 2], activation="relu", output="softmax", cost="log_likelihood", seed=2
    )
    X, Xv = rng.normal(size=(40, 10)), rng.normal(size=(40, 10))
    return net, X, rng.integers(0, 2, 40), Xv, rng.integers(0, 2, 40)


def test_early_stopping_restores_the_best_weights():
    net, X, y, Xv, yv = overfitting_problem()
    history = net.fit(
        X,
        y,
        epochs=200,
        batch_size=8,
        optimizer="adam",
        lr=0.01,
        validation_data=(Xv, yv),
        early_stopping=True,
        patience=3,
    )
    epochs_run = len(history["cost"])
    assert epochs_run < 200
    best = int(np.argmin(history["val_cost"]))
    assert epochs_run == best + 1 + 3
    assert net.cost(Xv, yv) == pytest.approx(history["val_cost"][best], rel=1e-12)


def test_early_stopping_says_when_it_stopped_and_whose_weights_it_restored(capsys):
    net, X, y, Xv, yv = overfitting_problem()
    options = dict(epochs=200, batch_size=8, optimizer="adam", lr=0.01, patience=3)
    history = net.fit(X, y, validation_data=(Xv, yv), early_stopping=True, verbose=True, **options)
    best, last = int(np.argmin(history["val_cost"])), len(history["cost"]) - 1
    assert (history.stopped_epoch, history.restored_epoch) == (last, best)
    assert net.history is history
    ending = capsys.readouterr().out.strip().splitlines()[-1]
    assert ending == (
        f"early stopping after epoch {last + 1}/200: val_cost has not improved for 3 "
        f"epochs; restored the weights of epoch {best + 1} "
        f"(val_cost {history['val_cost'][best]:.4f})"
    )


def test_history_says_nothing_stopped_or_was_restored_when_nothing_was(capsys):
    net, X, y, Xv, yv = overfitting_problem()
    history = net.fit(
        X,
        y,
        epochs=200,
        batch_size=8,
        optimizer="adam",
        lr=0.01,
        validation_data=(Xv, yv),
        early_stopping=True,
        patience=3,
        restore_best_weights=False,
    )
    assert history.stopped_epoch == len(history["cost"]) - 1 and history.restored_epoch is None
    history = net.fit(X, y, epochs=2, verbose=True)
    assert history.stopped_epoch is None and history.restored_epoch is None
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("epoch 2/2")


def test_a_stop_by_callback_is_recorded_and_told(capsys):
    net, X, y = softmax_problem()
    history = net.fit(X, y, epochs=10, verbose=True, callbacks=[lambda epoch, _: epoch == 1])
    assert (history.stopped_epoch, history.restored_epoch) == (1, None)
    ending = capsys.readouterr().out.strip().splitlines()[-1]
    assert ending == "a callback stopped training after epoch 2/10"


def test_early_stopping_without_validation_data_holds_out_a_tenth():
    net, X, y, _, _ = overfitting_problem()
    history = net.fit(X, y, epochs=3, early_stopping=True, patience=5)
    assert len(history["val_cost"]) == 3


def test_callbacks_see_metrics_and_can_stop():
    net, X, y = softmax_problem()
    seen = []

    def stop_after_two(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        return epoch == 1

    history = net.fit(
        X, y, epochs=10, validation_fraction=0.25, train_accuracy=True, callbacks=[stop_after_two]
    )
    assert len(history["cost"]) == 2
    keys = ["accuracy", "cost", "lr", "time", "val_accuracy", "val_cost"]
    assert seen == [(0, keys), (1, keys)]


def test_training_accuracy_is_measured_after_the_epoch():
    net, X, y = softmax_problem()
    history = net.fit(X, y, epochs=2, train_accuracy=True, shuffle=False)
    assert history["accuracy"][-1] == net.evaluate(X, y)


def test_verbose_prints_one_line_per_epoch_off_a_terminal(capsys):
    net, X, y = softmax_problem()
    net.fit(X, y, epochs=3, verbose=True, validation_fraction=0.25)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert "val_accuracy" in lines[0] and captured.err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _FailingStdout(io.StringIO):
    """A standard output that fails: a full disk (OSError) or closed (ValueError)."""

    def __init__(self, failure: str) -> None:
        super().__init__()
        self.failure, self.attempts = failure, 0

    def write(self, text: str) -> int:
        self.attempts += 1
        if self.failure == "full":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise ValueError("I/O operation on closed file.")


@pytest.mark.parametrize("failure", ["full", "closed"])
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_failing_standard_output_costs_fit_nothing(monkeypatch, failure, optimizer):
    """verbose=True with a stdout that fails: the progress output remembers its failure
    (one attempt, no more), and training runs every epoch as it would quietly."""
    quiet, X, y = softmax_problem(n_samples=60)
    loud, _, _ = softmax_problem(n_samples=60)
    options = {"epochs": 4, "optimizer": optimizer, "validation_fraction": 0.25, "seed": 2}
    quiet.fit(X, y, **options)
    stdout = _FailingStdout(failure)
    monkeypatch.setattr(sys, "stdout", stdout)
    history = loud.fit(X, y, verbose=True, **options)
    assert len(history["cost"]) == 4 and stdout.attempts == 1
    np.testing.assert_array_equal(loud.params, quiet.params)


def test_progress_bar_on_a_terminal_does_not_change_training(monkeypatch, capsys):
    net_quiet, X, y = softmax_problem(n_samples=200)
    net_bar = dp.Network.from_params(
        net_quiet.weights,
        net_quiet.biases,
        activation="tanh",
        output="softmax",
        cost="log_likelihood",
    )
    options = {"epochs": 2, "batch_size": 3, "optimizer": "adam", "dropout": 0.2, "seed": 4}
    net_quiet.fit(X, y, **options)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    net_bar.fit(X, y, verbose=True, **options)
    np.testing.assert_array_equal(net_bar.params, net_quiet.params)
    bar = terminal.getvalue()
    assert "epoch 1/2" in bar and "cost=" in bar and "200/200" in bar
    assert capsys.readouterr().out.count("\n") == 2  # one summary line per epoch


# ------------------------------------------------------------------ sample weights
def twin_networks():
    net, X, y = softmax_problem()
    twin = dp.Network.from_params(
        net.weights, net.biases, activation="tanh", output="softmax", cost="log_likelihood"
    )
    return net, twin, X, y


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_integer_weights_equal_repeated_samples(optimizer):
    net, twin, X, y = twin_networks()
    weights = np.array([2, 1, 0, 3, 1, 1, 1, 0, 2, 1, 1, 1])
    options = {
        "epochs": 3,
        "batch_size": 100,
        "shuffle": False,
        "optimizer": optimizer,
        "lr": 0.05,
        "lmbda": 1.0,
    }
    history = net.fit(X, y, sample_weight=weights, **options)
    repeated = np.repeat(np.arange(12), weights)
    # L2's n is the number of rows given, so scale lmbda to keep (lmbda / n) equal.
    options["lmbda"] = len(repeated) / 12
    twin_history = twin.fit(X[repeated], y[repeated], **options)
    assert_close(net.params, twin.params, 1e-12)
    assert history["cost"] == pytest.approx(twin_history["cost"], rel=1e-12)


@pytest.mark.parametrize("weights", [np.full(12, 3.0), 3.0, np.array(0.5)], ids=repr)
def test_uniform_weights_change_nothing(weights):
    """Equal weights, as an array or a scalar for every sample, leave the mean cost as is."""
    net, twin, X, y = twin_networks()
    net.fit(X, y, epochs=2, batch_size=5, sample_weight=weights, optimizer="momentum")
    twin.fit(X, y, epochs=2, batch_size=5, optimizer="momentum")
    assert_close(net.params, twin.params, 1e-12)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (-np.ones(12), ">= 0"),
        (np.zeros(12), "positive sum"),
        (np.ones(11), r"shape \(12,\)"),
        (np.full(12, np.nan), "NaN"),
        (0.0, "positive sum"),
        (np.array([[1.0]]), r"shape \(12,\)"),
    ],
)
def test_invalid_sample_weights(weights, match):
    net, X, y = softmax_problem()
    with pytest.raises(ValueError, match=f"sample_weight: .*{match}"):
        net.fit(X, y, sample_weight=weights)


def test_an_invalid_option_leaves_the_networks_optimizer_untouched():
    net, X, y = softmax_problem()
    net.fit(X, y, epochs=1, optimizer="adam", lr=0.01)
    state = [array.copy() for array in net.optimizer.state]
    with pytest.raises(ValueError, match="lmbda"):
        net.fit(X, y, epochs=1, lr=5.0, lmbda=-1.0)
    assert net.optimizer.lr == 0.01
    for before, after in zip(state, net.optimizer.state):
        np.testing.assert_array_equal(before, after)


def test_extra_metrics_see_the_current_epochs_metrics():
    net, X, y = softmax_problem()
    seen = []

    def record(net, metrics):
        seen.append(dict(metrics))
        return metrics["lr"] * 2

    history = net.fit(
        X,
        y,
        epochs=3,
        lr=0.1,
        schedule=lambda epoch: 0.1 / (epoch + 1),
        metrics={"double_lr": record},
    )
    assert [m["lr"] for m in seen] == history["lr"]
    assert [m["time"] for m in seen] == history["time"]
    assert history["double_lr"] == [2 * lr for lr in history["lr"]]


# ------------------------------------------------------------------ full batch: L-BFGS
def test_lbfgs_single_layer_reaches_logistic_regressions_solution():
    """Softmax + log-likelihood with L2 lambda is multinomial logistic regression: L-BFGS
    on the full-batch objective reaches scikit-learn's LogisticRegression(C=1/lambda)."""
    from sklearn import linear_model  # the test extra's

    X, y = dp.datasets.load_digits()
    net = dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0, init="glorot")
    history = net.fit(X, y, optimizer="lbfgs", lmbda=1.0, epochs=5000, tol=1e-9)
    reference = linear_model.LogisticRegression(C=1.0, tol=1e-10, max_iter=20000).fit(X, y)
    assert np.abs(net.predict(X) - reference.predict_proba(X)).max() < 1e-5
    assert list(history) == ["cost", "time"] and len(history["cost"]) > 10


def test_lbfgs_history_callbacks_and_validation():
    net, X, y = softmax_problem(n_samples=60)
    seen = []

    def stop_after_five(iteration, metrics):
        seen.append(metrics["val_cost"])
        return iteration == 4

    history = net.fit(
        X,
        y,
        optimizer="lbfgs",
        epochs=100,
        validation_fraction=0.25,
        callbacks=[stop_after_five],
        train_accuracy=True,
    )
    assert len(history["cost"]) == 5 and seen == history["val_cost"]
    assert set(history) == {"cost", "accuracy", "val_cost", "val_accuracy", "time"}
    assert all(np.diff(history["cost"]) <= 1e-12)  # L-BFGS-B never accepts an uphill step


def test_lbfgs_ends_with_the_best_iteration_after_an_interruption():
    net, X, y = softmax_problem(n_samples=60)
    best = {}

    def interrupt(iteration, metrics):
        best[iteration] = net.params.copy()
        if iteration == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, optimizer="lbfgs", epochs=100, callbacks=[interrupt])
    assert len(net.history["cost"]) == 4
    np.testing.assert_array_equal(net.params, best[3])


def test_lbfgs_divergence_keeps_the_best_parameters():
    rng = np.random.default_rng(0)
    net = dp.Network([3, 4, 2], activation="relu", output="identity", seed=0)
    X, Y = rng.normal(size=(20, 3)), np.full((20, 2), 1e200)
    before = net.params.copy()
    with pytest.raises(dp.DivergenceError, match="L-BFGS"):
        net.fit(X, Y, optimizer="lbfgs", epochs=50)
    assert np.isfinite(net.params).all()
    np.testing.assert_array_equal(net.params, before)  # no iteration completed


@pytest.mark.parametrize(
    "option",
    [
        {"batch_size": 32},
        {"batch_size": 10},
        {"patience": 5},
        {"checkpoint_every": 1},
        {"dropout": 0.1},
        {"schedule": "step"},
        {"early_stopping": True},
        {"lr": 0.1},
        {"momentum": 0.5},
    ],
    ids=lambda option: f"{next(iter(option))}={next(iter(option.values()))}",
)
def test_lbfgs_refuses_mini_batch_options(option):
    net, X, y = softmax_problem()
    with pytest.raises(ValueError, match=f"{next(iter(option))}: does not apply"):
        net.fit(X, y, optimizer="lbfgs", **option)


@pytest.mark.parametrize("weight", [5e-324, 1e-300, 3.0, 1e308], ids=str)
def test_full_batch_training_gives_any_uniform_weight_the_answer_of_weights_of_1(weight):
    """The objective and L-BFGS scale sample weights to at most 1, as SGD does: a subnormal
    or a huge uniform weight neither underflows to a zero objective nor overflows."""
    net, X, y = softmax_problem(n_samples=60)
    start = net.params.copy()
    cost, gradient = net.objective(X, y, sample_weight=weight, lmbda=0.1)
    cost_1, gradient_1 = net.objective(X, y, lmbda=0.1)
    assert cost == pytest.approx(cost_1, rel=1e-12) and cost_1 > 0.1
    np.testing.assert_allclose(gradient, gradient_1, rtol=1e-12, atol=1e-15)
    history = net.fit(X, y, optimizer="lbfgs", epochs=20, sample_weight=weight)
    weighted = net.params.copy()
    net.params[...] = start
    history_1 = net.fit(X, y, optimizer="lbfgs", epochs=20)
    assert len(history["cost"]) == len(history_1["cost"]) == 20
    np.testing.assert_allclose(weighted, net.params, rtol=1e-9, atol=1e-12)


def test_lbfgs_trains_float32_networks():
    net, X, y = softmax_problem(n_samples=60, dtype="float32")
    history = net.fit(X, y, optimizer="lbfgs", epochs=30)
    assert net.params.dtype == np.float32 and history["cost"][-1] < history["cost"][0]


# ------------------------------------------------------------------ fit's settings
def _default_arguments() -> dict:
    from deltaprop._settings import FitSettings

    parameters = inspect.signature(dp.training.fit).parameters
    return {name: p.default for name, p in parameters.items() if name not in FitSettings.DATA}


def test_every_parameter_of_fit_is_a_field_of_its_settings():
    """A new option of fit cannot be added without being part of the settings (and so of
    what the ranks of data-parallel training compare)."""
    from deltaprop._settings import FitSettings

    parameters = set(inspect.signature(dp.training.fit).parameters)
    assert set(FitSettings.DATA) <= parameters
    assert parameters - set(FitSettings.DATA) <= set(FitSettings._FIELDS)
    assert inspect.signature(dp.Network.fit) == inspect.signature(dp.training.fit)


def test_fit_settings_are_one_frozen_value_and_the_ranks_compare_all_but_rank_local_fields():
    from deltaprop._settings import FitSettings

    net = dp.Network([3, 4, 2], seed=0)
    settings = FitSettings.from_arguments(net, {**_default_arguments(), "lr": 0.5})
    with pytest.raises(AttributeError, match="frozen"):
        settings.epochs = 3
    shared = settings.shared()
    assert not set(shared) & {*FitSettings.RANK_LOCAL, *FitSettings.FOLDED}
    assert shared["optimizer"] == {"class": "SGD", "lr": 0.5, "weight_decay": 0.0}
    assert shared["architecture"]["dtype"] == "float64"
    assert shared["architecture"]["matmul_precision"] == "highest"
    assert net.optimizer is None  # checking the arguments changed nothing
    with pytest.raises(TypeError, match="unknown \\['colour'\\]"):
        FitSettings(**{name: None for name in FitSettings._FIELDS}, colour=None)
