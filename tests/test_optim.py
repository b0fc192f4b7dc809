"""Optimizers, regularisation, dropout, schedules, early stopping and callbacks."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

import deltaprop as dp
from conftest import assert_close
from deltaprop import optim, schedules


def problem(n_samples: int = 12, dtype: str = "float64"):
    rng = np.random.default_rng(11)
    net = dp.Network(
        [5, 6, 3], activation="tanh", output="softmax", cost="log_likelihood", dtype=dtype, seed=11
    )
    return net, rng.normal(size=(n_samples, 5)), rng.integers(0, 3, size=n_samples)


def simulate(net, X, y, optimizer_name, epochs, batch_size, lr, lmbda=0.0, l1=0.0, **hyper):
    """PyTorch's update rules written out in numpy, with the core's (tested) gradients."""
    params = net.params.copy()
    weight_mask = np.concatenate(
        [
            np.concatenate([np.ones(W.size), np.zeros(b.size)])
            for W, b in zip(net.weights, net.biases)
        ]
    ).astype(bool)
    first, second, step = np.zeros_like(params), np.zeros_like(params), 0
    mu = hyper.get("momentum", 0.9)
    b1, b2 = hyper.get("betas", (0.9, 0.999))
    eps, decay = hyper.get("eps", 1e-8), hyper.get("weight_decay", 0.0)
    decoupled = optimizer_name == "adamw"
    n = len(X)
    for _ in range(epochs):
        for start in range(0, n, batch_size):
            clone = dp.Network.from_params(
                *net._layer_views(params.copy()),
                activation=net.activation,
                output=net.output,
                cost=net.cost_name,
            )
            _, dW, db = clone.gradients(
                X[start : start + batch_size], y[start : start + batch_size]
            )
            g = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(dW, db)])
            coupled = 0.0 if decoupled else decay
            g = g + weight_mask * ((lmbda / n + coupled) * params + (l1 / n) * np.sign(params))
            step += 1
            if optimizer_name == "sgd":
                params -= lr * g
            elif optimizer_name == "momentum":
                first = mu * first + g
                params -= lr * first
            elif optimizer_name == "nesterov":
                first = mu * first + g
                params -= lr * (g + mu * first)
            else:
                if decoupled:
                    params = np.where(weight_mask, params * (1 - lr * decay), params)
                first = b1 * first + (1 - b1) * g
                second = b2 * second + (1 - b2) * g * g
                m_hat, v_hat = first / (1 - b1**step), second / (1 - b2**step)
                params = params - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("sgd", {}),
        ("momentum", {"momentum": 0.8}),
        ("nesterov", {"momentum": 0.9}),
        ("adam", {}),
        ("adam", {"weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-6}),
        ("adamw", {"weight_decay": 0.05}),
    ],
    ids=["sgd", "momentum", "nesterov", "adam", "adam-l2", "adamw"],
)
@pytest.mark.parametrize(("lmbda", "l1"), [(0.0, 0.0), (3.0, 0.5)], ids=["plain", "l2-l1"])
def test_updates_follow_pytorch_rules(name, hyper, lmbda, l1):
    net, X, y = problem()
    expected = simulate(
        net, X, y, name, epochs=2, batch_size=5, lr=0.05, lmbda=lmbda, l1=l1, **hyper
    )
    optimizer = optim.get(name, lr=0.05, **hyper)
    net.fit(X, y, epochs=2, batch_size=5, optimizer=optimizer, lmbda=lmbda, l1=l1, shuffle=False)
    assert_close(net.params, expected, 1e-10)
    assert optimizer.step == 6 and net.optimizer is optimizer


def test_adam_first_step_moves_each_weight_by_lr():
    # m_hat / sqrt(v_hat) = g / |g| on the first step: every parameter moves by
    # lr |g| / (|g| + eps) against the sign of its gradient.
    net, X, y = problem()
    _, dW, _ = net.gradients(X, y)
    before = net.weights[0].copy()
    net.fit(X, y, epochs=1, batch_size=len(X), optimizer="adam", lr=0.01, shuffle=False)
    expected = -0.01 * dW[0] / (np.abs(dW[0]) + 1e-8)
    np.testing.assert_allclose(net.weights[0] - before, expected, rtol=1e-9, atol=1e-15)


def test_training_resumes_with_the_optimizer_state():
    net_a, X, y = problem()
    net_b = dp.Network.from_params(
        net_a.weights, net_a.biases, activation="tanh", output="softmax", cost="log_likelihood"
    )
    net_a.fit(X, y, epochs=4, batch_size=4, optimizer="adam", lr=0.01, shuffle=False)
    net_b.fit(X, y, epochs=2, batch_size=4, optimizer="adam", lr=0.01, shuffle=False)
    net_b.fit(X, y, epochs=2, batch_size=4, shuffle=False)  # continues with its Adam
    np.testing.assert_array_equal(net_a.params, net_b.params)
    assert net_b.optimizer.step == 12


def test_optimizer_state_must_fit_the_network():
    net, X, y = problem()
    adam = optim.Adam()
    net.fit(X, y, epochs=1, optimizer=adam)
    other = dp.Network([5, 4, 3], output="softmax", cost="log_likelihood", seed=0)
    with pytest.raises(ValueError, match="optimizer: its state belongs to a network"):
        other.fit(X, y, epochs=1, optimizer=adam)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam"])
def test_state_of_dead_units_decays_to_zero_not_to_subnormals(name, dtype):
    # Hidden unit 0 is a dead ReLU (z < 0 for every sample): its incoming and outgoing
    # weights get zero gradients, so their state only decays (v <- mu v). Started just
    # above the smallest normal number, it must end at exactly zero, never subnormal
    # (a 2x slower epoch on x86), while every live parameter still trains.
    rng = np.random.default_rng(5)
    weights = [rng.normal(size=(4, 5)), rng.normal(size=(3, 4))]
    biases = [np.array([-1e3, 0.0, 0.0, 0.0]), np.zeros(3)]
    net = dp.Network.from_params(
        weights, biases, activation="relu", output="softmax", cost="log_likelihood", dtype=dtype
    )
    X, y = rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)
    tiny = np.finfo(dtype).tiny
    optimizer = optim.get(name, lr=0.01)
    optimizer.bind(net.params.size, np.dtype(dtype))
    optimizer.state = [np.full(net.params.size, 16 * tiny, dtype=dtype)]
    if name == "adam":  # beta2 = 0.999: start the second moment within one step of tiny
        optimizer.state.append(np.full(net.params.size, 1.0005 * tiny, dtype=dtype))
    before = net.params.copy()
    net.fit(X, y, epochs=60, batch_size=8, optimizer=optimizer, shuffle=False)
    (W1, W2), (b1, _) = net._layer_views(np.arange(net.params.size))
    dead = np.zeros(net.params.size, dtype=bool)
    dead[np.concatenate([W1[0], [b1[0]], W2[:, 0]])] = True
    for state in optimizer.state:
        assert not ((state != 0) & (np.abs(state) < tiny)).any()
        assert (state[dead] == 0).all()
    assert (net.params[~dead] != before[~dead]).all()


@pytest.mark.parametrize(
    ("factory", "error", "match"),
    [
        (lambda: optim.SGD(lr=0.0), ValueError, "lr"),
        (lambda: optim.SGD(lr="x"), TypeError, "lr"),
        (lambda: optim.Momentum(momentum=1.0), ValueError, "momentum"),
        (lambda: optim.Adam(betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
        (lambda: optim.Adam(betas=0.9), TypeError, "betas"),
        (lambda: optim.Adam(eps=0.0), ValueError, "eps"),
        (lambda: optim.Adam(weight_decay=-1.0), ValueError, "weight_decay"),
        (lambda: optim.get("rmsprop"), ValueError, "optimizer"),
        (lambda: schedules.get("cosine"), ValueError, "schedule"),
        (lambda: schedules.StepDecay(step_size=0), ValueError, "step_size"),
        (lambda: schedules.Adaptive(factor=2.0), ValueError, "factor"),
    ],
)
def test_invalid_hyperparameters(factory, error, match):
    with pytest.raises(error, match=match):
        factory()


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
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
def test_invalid_fit_options(option, value, error):
    net, X, y = problem()
    before = net.params.copy()
    with pytest.raises(error, match=option):
        net.fit(X, y, epochs=1, **{"optimizer": "momentum", option: value})
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
        net, X, y = problem()
        net.fit(X, y, epochs=3, batch_size=4, lr=0.1, dropout=dropout, seed=seed)
        return net

    a, b = train(1, 0.5), train(1, 0.5)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, train(2, 0.5).params)
    assert not np.array_equal(a.params, train(1, 0.0).params)
    X = problem()[1]
    np.testing.assert_array_equal(a.predict(X), a.predict(X))


def test_an_epoch_split_over_calls_equals_one_call():
    """The progress bar runs an epoch in pieces; masks and updates must not notice."""
    results = []
    for pieces in ([(0, 12)], [(0, 4), (4, 12)]):
        net, X, y = problem()
        net.fit(X, y, epochs=0, optimizer="momentum")  # binds the optimizer
        Y = np.eye(3)[y]
        order = np.random.default_rng(0).permutation(12)
        for start, stop in pieces:
            _, _, diverged = net.train_rows(
                X, Y, rows=order[start:stop], batch_size=4, l2=0.1, dropout=0.5, seed=99,
                first_batch=start // 4,
            )
            assert diverged is None
        results.append(np.concatenate([net.params, net.optimizer.state[0]]))
    np.testing.assert_array_equal(results[0], results[1])


# ------------------------------------------------------------------ schedules
def test_step_and_function_schedules_set_the_rate():
    net, X, y = problem()
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


def test_early_stopping_without_validation_data_holds_out_a_tenth():
    net, X, y, _, _ = overfitting_problem()
    history = net.fit(X, y, epochs=3, early_stopping=True, patience=5)
    assert len(history["val_cost"]) == 3


def test_callbacks_see_metrics_and_can_stop():
    net, X, y = problem()
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
    net, X, y = problem()
    history = net.fit(X, y, epochs=2, train_accuracy=True, shuffle=False)
    assert history["accuracy"][-1] == net.evaluate(X, y)


def test_verbose_prints_one_line_per_epoch_off_a_terminal(capsys):
    net, X, y = problem()
    net.fit(X, y, epochs=3, verbose=True, validation_fraction=0.25)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert "val_accuracy" in lines[0] and captured.err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_does_not_change_training(monkeypatch, capsys):
    net_quiet, X, y = problem(n_samples=200)
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
    net, X, y = problem()
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


def test_uniform_weights_change_nothing():
    net, twin, X, y = twin_networks()
    net.fit(X, y, epochs=2, batch_size=5, sample_weight=np.full(12, 3.0), optimizer="momentum")
    twin.fit(X, y, epochs=2, batch_size=5, optimizer="momentum")
    assert_close(net.params, twin.params, 1e-12)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (-np.ones(12), ">= 0"),
        (np.zeros(12), "positive sum"),
        (np.ones(11), r"shape \(12,\)"),
        (np.full(12, np.nan), "NaN"),
    ],
)
def test_invalid_sample_weights(weights, match):
    net, X, y = problem()
    with pytest.raises(ValueError, match=f"sample_weight: .*{match}"):
        net.fit(X, y, sample_weight=weights)
