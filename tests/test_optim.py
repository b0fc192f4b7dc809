"""Optimizers: PyTorch's update rules, their state, and their hyper-parameters."""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp
from conftest import assert_close, softmax_problem
from deltaprop import optim, schedules


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
    net, X, y = softmax_problem()
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
    net, X, y = softmax_problem()
    _, dW, _ = net.gradients(X, y)
    before = net.weights[0].copy()
    net.fit(X, y, epochs=1, batch_size=len(X), optimizer="adam", lr=0.01, shuffle=False)
    expected = -0.01 * dW[0] / (np.abs(dW[0]) + 1e-8)
    np.testing.assert_allclose(net.weights[0] - before, expected, rtol=1e-9, atol=1e-15)


def test_training_resumes_with_the_optimizer_state():
    net_a, X, y = softmax_problem()
    net_b = dp.Network.from_params(
        net_a.weights, net_a.biases, activation="tanh", output="softmax", cost="log_likelihood"
    )
    net_a.fit(X, y, epochs=4, batch_size=4, optimizer="adam", lr=0.01, shuffle=False)
    net_b.fit(X, y, epochs=2, batch_size=4, optimizer="adam", lr=0.01, shuffle=False)
    net_b.fit(X, y, epochs=2, batch_size=4, shuffle=False)  # continues with its Adam
    np.testing.assert_array_equal(net_a.params, net_b.params)
    assert net_b.optimizer.step == 12


def test_optimizer_state_must_fit_the_network():
    net, X, y = softmax_problem()
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


# ------------------------------------------------------------------ Rprop
def rprop_reference(net, X, y, steps, lr, etas, step_sizes, lmbda=0.0):
    """torch.optim.Rprop's rule written out in numpy, on full-batch gradients of the core."""
    params = net.params.copy()
    weight_mask = np.concatenate(
        [
            np.concatenate([np.ones(W.size), np.zeros(b.size)])
            for W, b in zip(net.weights, net.biases)
        ]
    ).astype(bool)
    previous, step = np.zeros_like(params), np.full_like(params, lr)
    for _ in range(steps):
        clone = dp.Network.from_params(
            *net._layer_views(params.copy()),
            activation=net.activation,
            output=net.output,
            cost=net.cost_name,
        )
        _, dW, db = clone.gradients(X, y)
        g = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(dW, db)])
        g = g + weight_mask * (lmbda / len(X)) * params
        agreement = np.sign(g * previous)
        factor = np.where(agreement > 0, etas[1], np.where(agreement < 0, etas[0], 1.0))
        step = np.clip(step * factor, *step_sizes)
        g = np.where(agreement < 0, 0.0, g)
        params = params - np.sign(g) * step
        previous = g
    return params


@pytest.mark.parametrize("lmbda", [0.0, 2.0], ids=["plain", "l2"])
def test_rprop_full_batch_steps_follow_torchs_rule(lmbda):
    net, X, y = softmax_problem(n_samples=30)
    expected = rprop_reference(net, X, y, 20, 0.01, (0.5, 1.2), (1e-6, 50), lmbda)
    net.fit(X, y, epochs=20, batch_size=None, optimizer="rprop", lmbda=lmbda, shuffle=False)
    assert_close(net.params, expected, 1e-10)
    assert net.optimizer.step == 20


def test_rprop_matches_torch_optim_rprop():
    import torch  # the test extra's CPU build

    net, X, y = softmax_problem(n_samples=30)
    layers = []
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.copy()))
            linear.bias.copy_(torch.from_numpy(b.copy()))
        layers += [linear] + ([torch.nn.Tanh()] if l + 1 < len(net.weights) else [])
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.Rprop(
        model.parameters(), lr=0.02, etas=(0.4, 1.3), step_sizes=(1e-5, 0.5)
    )
    inputs, labels = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(20):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    rule = dp.optim.Rprop(lr=0.02, etas=(0.4, 1.3), step_sizes=(1e-5, 0.5))
    net.fit(X, y, epochs=20, batch_size=None, optimizer=rule, shuffle=False)
    expected = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    assert_close(net.params, expected, 1e-10)


def test_rprop_with_mini_batches_keeps_steps_within_bounds():
    net, X, y = softmax_problem(n_samples=60)
    net.fit(X, y, epochs=5, batch_size=10, optimizer=dp.optim.Rprop(step_sizes=(1e-4, 0.05)))
    previous, step = net.optimizer.state
    assert ((step >= 1e-4) & (step <= 0.05)).all() and np.isfinite(previous).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"etas": (1.0, 1.2)}, ValueError, r"etas\[0\]"),
        ({"etas": (0.5, 1.0)}, ValueError, r"etas\[1\]"),
        ({"etas": 0.5}, TypeError, "etas"),
        ({"step_sizes": (0.0, 1.0)}, ValueError, r"step_sizes\[0\]"),
        ({"step_sizes": (1.0, 0.5)}, ValueError, r"step_sizes\[1\]"),
        ({"lr": -1.0}, ValueError, "lr"),
    ],
)
def test_invalid_rprop_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        dp.optim.Rprop(**kwargs)
