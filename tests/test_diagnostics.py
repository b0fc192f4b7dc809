"""fit(diagnostics=True): the per-layer measures of each epoch, checked against the same
measures computed by hand from `deltaprop.reference` (each batch's gradients, each row's
z), over the processes of data-parallel training, and through the estimators."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import deltaprop as dp
from conftest import needs_mpi
from deltaprop import reference

sys.path.insert(0, str(Path(__file__).parent))
from test_distributed import launch, one_process

KEYS = ("learning_speed", "update_ratio", "saturated", "dead")


def _prime(activation: str, z: float) -> float:
    """sigma'(z) relative to its maximum, for the saturating activations."""
    if activation == "sigmoid":
        s = 1.0 / (1.0 + math.exp(-z))
        return s * (1.0 - s) / 0.25
    return 1.0 - math.tanh(z) ** 2


def by_hand(net, X, Y, weights, batch_size, lr):
    """One epoch of plain SGD in order, batch after batch, with its four measures."""
    W = [w.tolist() for w in net.weights]
    b = [v.tolist() for v in net.biases]
    hidden, output, cost = list(net.activations), net.output, net.cost_name
    activations = [*hidden, output]
    kw = dict(activation=hidden or "sigmoid", output=output)
    L = len(W)
    speed, saturated = np.zeros(L), np.zeros(L)
    active = [np.zeros(len(v), bool) for v in b]
    start = [np.array(w) for w in W]
    for first in range(0, len(X), batch_size):
        rows = range(first, min(len(X), first + batch_size))
        total = sum(weights[i] for i in rows)
        dW = [np.zeros_like(np.array(w)) for w in W]
        db = [np.zeros(len(v)) for v in b]
        for i in rows:
            _, gW, gb = reference.gradients(W, b, [X[i]], [Y[i]], cost=cost, **kw)
            for l in range(L):
                dW[l] += weights[i] / total * np.array(gW[l])
                db[l] += weights[i] / total * np.array(gb[l])
            zs, _ = reference.layers(W, b, X[i], **kw)
            for l, f in enumerate(activations):
                if f in ("sigmoid", "tanh"):
                    saturated[l] += sum(_prime(f, z) < 0.01 for z in zs[l])
                if f == "relu":
                    active[l] |= np.array(zs[l]) > 0
        speed += [np.linalg.norm(g) for g in db]
        W = [(np.array(w) - lr * g).tolist() for w, g in zip(W, dW)]
        b = [(np.array(v) - lr * g).tolist() for v, g in zip(b, db)]
    n_batches = -(-len(X) // batch_size)
    return {
        "learning_speed": list(speed / n_batches),
        "update_ratio": [
            np.linalg.norm(np.array(w) - w0) / np.linalg.norm(w0) for w, w0 in zip(W, start)
        ],
        "saturated": [
            saturated[l] / (len(X) * len(b[l])) if f in ("sigmoid", "tanh") else None
            for l, f in enumerate(activations)
        ],
        "dead": [1 - active[l].mean() if f == "relu" else None for l, f in enumerate(activations)],
    }, W


def assert_measures_close(actual: list, expected: list, rtol: float = 1e-9) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        if e is None:
            assert a is None
        else:
            assert a == pytest.approx(e, rel=rtol, abs=1e-12)


NETWORKS = [
    # hidden activations, output, cost
    (["sigmoid", "relu"], "sigmoid", "cross_entropy"),
    (["tanh", "relu"], "softmax", "log_likelihood"),
    (["relu", "sigmoid"], "sigmoid", "quadratic"),
    (["leaky_relu", "tanh"], "identity", "quadratic"),
]


@pytest.mark.parametrize("hidden, output, cost", NETWORKS)
@pytest.mark.parametrize("sample_weight", [False, True])
def test_one_epoch_matches_the_measures_by_hand(hidden, output, cost, sample_weight):
    """[3, 4, 3, 2], batches of 4, 4 and 2 rows; a unit made dead or saturated on purpose."""
    rng = np.random.default_rng(7)
    net = dp.Network([3, 4, 3, 2], activation=hidden, output=output, cost=cost,
                     dtype="float64", seed=3)  # fmt: skip
    for l, f in enumerate(hidden):
        if f == "relu":
            net.biases[l][0] = -30.0  # never active: dead from the start
        if f in ("sigmoid", "tanh"):
            net.biases[l][0] = 9.0  # saturated for these inputs
    X = rng.normal(size=(10, 3))
    Y = np.eye(2)[rng.integers(0, 2, 10)] if output != "identity" else rng.normal(size=(10, 2))
    weights = rng.uniform(0.2, 2.0, 10) if sample_weight else np.ones(10)
    expected, W_after = by_hand(net, X.tolist(), Y.tolist(), list(weights), 4, 0.5)
    history = net.fit(X, Y, sample_weight=weights if sample_weight else None, epochs=1,
                      batch_size=4, optimizer="sgd", lr=0.5, shuffle=False,
                      diagnostics=True)  # fmt: skip
    for W, expected_W in zip(net.weights, W_after):  # the same epoch was trained
        np.testing.assert_allclose(W, expected_W, rtol=1e-12, atol=1e-14)
    for key in KEYS:
        assert len(history[key]) == 1
        assert_measures_close(history[key][0], expected[key])
    for l, f in enumerate(hidden):  # the unit made so counts
        if f == "relu":
            assert history["dead"][0][l] >= 1 / net.sizes[l + 1]
        if f in ("sigmoid", "tanh"):
            assert history["saturated"][0][l] >= 1 / net.sizes[l + 1]


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "rprop"])
def test_every_optimizer_measures_the_gradient_it_steps_with(optimizer):
    """The learning speed is the batch's own ∂C/∂b whichever way the step takes it: the
    first batch of a one-batch epoch is the reference's gradient at the start."""
    rng = np.random.default_rng(1)
    net = dp.Network([3, 5, 2], activation="tanh", output="sigmoid", cost="cross_entropy",
                     dtype="float64", seed=2)  # fmt: skip
    X, Y = rng.normal(size=(6, 3)), np.eye(2)[rng.integers(0, 2, 6)]
    W, b = [w.tolist() for w in net.weights], [v.tolist() for v in net.biases]
    _, _, db = reference.gradients(W, b, X.tolist(), Y.tolist(), activation="tanh",
                                   output="sigmoid", cost="cross_entropy")  # fmt: skip
    history = net.fit(X, Y, epochs=1, batch_size=None, optimizer=optimizer, lr=0.01,
                      diagnostics=True)  # fmt: skip
    expected = [np.linalg.norm(g) for g in db]
    assert_measures_close(history["learning_speed"][0], expected, rtol=1e-10)


def test_epochs_in_several_core_calls_and_float32_measure_alike(monkeypatch):
    """An epoch trained in several core calls adds up as in one; float32 agrees."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(300, 4)), rng.integers(0, 3, 300)

    def history(dtype):
        net = dp.Network([4, 6, 6, 3], activation=["relu", "sigmoid"], dtype=dtype, seed=1)
        return net.fit(X, y, epochs=2, batch_size=10, lr=0.1, diagnostics=True)

    in_one_call = history("float64")
    float32 = history("float32")
    monkeypatch.setattr(dp._minibatch, "_ROWS_PER_CALL", 20)  # 15 calls an epoch
    in_calls = history("float64")
    for key in KEYS:
        for one, several, single in zip(in_one_call[key], in_calls[key], float32[key]):
            assert_measures_close(several, one, rtol=1e-12)
            assert_measures_close(single, one, rtol=1e-3)


def test_off_by_default_and_checked():
    net = dp.Network([2, 3, 1], seed=0)
    X, y = np.zeros((4, 2)), np.zeros(4)
    assert not set(KEYS) & set(net.fit(X, y, epochs=1))
    with pytest.raises(TypeError, match="diagnostics: expected True or False, got 'yes'"):
        net.fit(X, y, diagnostics="yes")
    with pytest.raises(ValueError, match="diagnostics: does not apply to optimizer='lbfgs'"):
        net.fit(X, y, optimizer="lbfgs", diagnostics=True)
    with pytest.raises(ValueError, match="does not record"):
        net.fit(X, y, diagnostics=True, early_stopping=dp.training.EarlyStopping(monitor="dead"))
    with pytest.raises(ValueError, match="built-in metrics"):
        net.fit(X, y, diagnostics=True, metrics={"dead": lambda net, metrics: 0.0})


def test_the_core_checks_the_accumulator():
    net = dp.Network([2, 3, 1], activation="relu", seed=0)
    assert net._core.diagnostics_size == 2 + 2 * 2 + 3  # the layout _diagnostics reads
    net.optimizer = dp.optim.SGD(0.1)
    X, Y = np.zeros((4, 2)), np.zeros((4, 1))
    for bad in (np.zeros(8), np.zeros(9, np.float32), np.zeros((9, 1))):
        with pytest.raises((ValueError, TypeError), match="diagnostics"):
            net.train_rows(X, Y, batch_size=2, diagnostics=bad)


def test_a_checkpoint_keeps_the_diagnostics_and_resumes_them(tmp_path):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    path = tmp_path / "run.dpz"

    def run(epochs, **options):
        net = dp.Network([3, 4, 2], activation="sigmoid", dtype="float64", seed=4)
        return net.fit(X, y, epochs=epochs, checkpoint=path, diagnostics=True, **options)

    whole = run(4)
    path.unlink()
    run(2)
    resumed = run(4, resume=True)
    for key in KEYS:
        assert len(resumed[key]) == 4
        for a, e in zip(resumed[key], whole[key]):
            assert_measures_close(a, e, rtol=1e-12)
    with pytest.raises(ValueError, match="diagnostics"):
        net = dp.Network([3, 4, 2], activation="sigmoid", dtype="float64", seed=4)
        net.fit(X, y, epochs=4, checkpoint=path, resume=True)


@needs_mpi
def test_two_ranks_measure_as_one_process(tmp_path):
    """Replicated rows (sample weights, a rank with no rows of every other batch) and
    sharded rows (one batch of all rows: the same gradient in any order)."""
    common = {"epochs": 2, "batch_size": 10, "n": 97, "diagnostics": True,
              "sizes": [5, 7, 6, 3], "activation": ["relu", "tanh"]}  # fmt: skip
    runs = [
        {**common, "optimizer": "sgd", "lr": 0.3},
        {**common, "optimizer": "momentum", "lr": 0.05, "sample_weight": True},
        {**common, "optimizer": "sgd", "lr": 0.3, "batch_size": 1},
        {**common, "optimizer": "adam", "lr": 0.01, "batch_size": None, "sharded": True,
         "shards": [0, 30, 97]},
    ]  # fmt: skip
    results = launch(2, runs, tmp_path)
    for run, rank0, rank1 in zip(runs, *results):
        assert rank0["error"] is None, rank0["error"]
        alone = {k: v for k, v in run.items() if k not in ("sharded", "shards")}
        net = one_process(alone)
        for key in KEYS:
            assert rank0["history"][key] == rank1["history"][key]
            for a, e in zip(rank0["history"][key], net.history[key]):
                assert_measures_close(a, e, rtol=1e-9)


# ------------------------------------------------------------------------- estimators
def test_the_estimators_keep_the_diagnostics_of_every_fit():
    from deltaprop.sklearn import DeltapropClassifier, DeltapropRegressor

    X, y = dp.datasets.load_digits()
    clf = DeltapropClassifier((12, 8), activation=("relu", "tanh"), max_iter=3,
                              diagnostics=True, random_state=0)  # fmt: skip
    with pytest.warns(Warning):  # max_iter reached
        clf.fit(X[:300], y[:300])
    assert set(clf.diagnostics_) == set(KEYS)
    assert len(clf.diagnostics_["learning_speed"]) == clf.n_iter_ == 3
    assert clf.diagnostics_["dead"][0][0] is not None and clf.diagnostics_["dead"][0][1] is None
    assert clf.diagnostics_["saturated"][0][1] is not None
    clf.partial_fit(X[:300], y[:300])
    assert len(clf.diagnostics_["update_ratio"]) == 4  # over every fit and partial_fit
    reg = DeltapropRegressor((5,), max_iter=2, random_state=0)
    with pytest.warns(Warning):
        reg.fit(X[:100], y[:100].astype(float))
    assert reg.diagnostics_ is None
    with pytest.raises(TypeError, match="diagnostics"):
        DeltapropRegressor(diagnostics="yes").fit(X[:50], y[:50].astype(float))
    with pytest.raises(ValueError, match="diagnostics: does not apply to optimizer='lbfgs'"):
        DeltapropRegressor(optimizer="lbfgs", diagnostics=True).fit(X[:50], y[:50].astype(float))


# ------------------------------------------------------------------------------- plots
@pytest.fixture
def sigmoid_history():
    X, y = dp.datasets.load_digits()
    net = dp.Network([64, 10, 10, 10], activation=["sigmoid", "relu"], seed=0)
    return net.fit(X[:200], y[:200], epochs=3, lr=0.1, diagnostics=True)


def test_learning_speed_draws_a_line_per_layer_on_a_log_scale(sigmoid_history):
    pytest.importorskip("matplotlib")  # a test extra: present where the tests run
    ax = dp.plot.learning_speed(sigmoid_history)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == [
        "hidden layer 1", "hidden layer 2", "output layer"
    ]  # fmt: skip
    speed = np.array(sigmoid_history["learning_speed"])
    for l, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(line.get_ydata(), speed[:, l])
    assert ax.get_yscale() == "log"
    assert ax.get_legend() is not None


def test_saturation_draws_the_layers_it_applies_to(sigmoid_history, tmp_path):
    from matplotlib.figure import Figure

    figure = Figure()
    given = figure.subplots()
    ax = dp.plot.saturation(sigmoid_history, ax=given)
    assert ax is given
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == [  # Network's default output is a sigmoid
        "hidden layer 1 saturated", "output layer saturated", "hidden layer 2 dead"
    ]  # fmt: skip
    np.testing.assert_allclose(lines["hidden layer 1 saturated"].get_ydata(),
                               [epoch[0] for epoch in sigmoid_history["saturated"]])  # fmt: skip
    assert lines["hidden layer 2 dead"].get_linestyle() == "--"
    figure.savefig(tmp_path / "saturation.png")
    assert (tmp_path / "saturation.png").stat().st_size > 0


@pytest.mark.parametrize(
    "history, match",
    [
        (
            {"cost": [1.0]},
            r"history\['learning_speed'\]: missing; train with fit\(\.\.\., "
            r"diagnostics=True\)",
        ),
        ({"learning_speed": []}, "at least one"),
        ({"learning_speed": [[1.0, 2.0], [1.0]]}, "one value per layer"),
        ({"learning_speed": [["fast"]]}, r"\[0\]\[0\]: expected a real number or None"),
        ([1.0], "expected the dict"),
    ],
)
def test_the_plots_refuse_a_history_without_diagnostics(history, match):
    with pytest.raises(ValueError, match=match):
        dp.plot.learning_speed(history)


def test_saturation_refuses_a_network_with_nothing_to_draw():
    history = {"saturated": [[None, None]], "dead": [[None, None]]}
    with pytest.raises(ValueError, match="no sigmoid, tanh or relu layer"):
        dp.plot.saturation(history)


# ------------------------------------------------------------------------ command line
def test_the_command_line_prints_a_line_per_epoch_and_draws_both(tmp_path, capsys):
    from deltaprop import cli

    curves = tmp_path / "curves.png"
    argv = ["train", "--hidden", "12", "8", "--activation", "sigmoid", "relu", "--epochs", "2",
            "--diagnostics", "--plot", str(curves)]  # fmt: skip
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    measured = [line for line in lines if line.startswith("  layers 1..3: ")]
    assert len(measured) == 2
    assert "speed " in measured[0] and "saturated " in measured[0] and "dead - " in measured[0]
    for name in ("curves.png", "curves-learning-speed.png", "curves-saturation.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert cli.main(["train", "--epochs", "1", "--quiet", "--diagnostics"]) == 0
    assert "layers 1.." not in capsys.readouterr().out
