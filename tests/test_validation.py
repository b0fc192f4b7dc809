"""Bad input raises a clear ValueError/TypeError naming the argument; unusual but valid
input (other dtypes, strides, byte order, alignment) gives the same answer as clean input."""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import _core


@pytest.fixture
def net() -> dp.Network:
    return dp.Network([4, 5, 3], activation="tanh", output="softmax", cost="log_likelihood", seed=0)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 4)), rng.integers(0, 3, size=6)


# ---------------------------------------------------------------- construction
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sizes": [4, 0, 3]}, ValueError, "sizes"),
        ({"sizes": [4, -2, 3]}, ValueError, "sizes"),
        ({"sizes": [4]}, ValueError, "sizes"),
        ({"sizes": []}, ValueError, "sizes"),
        ({"sizes": [4, 2.5, 3]}, TypeError, "sizes"),
        ({"sizes": "43"}, TypeError, "sizes"),
        ({"activation": "swish"}, ValueError, "activation"),
        ({"activation": "softmax"}, ValueError, "activation"),
        ({"output": "relu"}, ValueError, "output"),
        ({"cost": "hinge"}, ValueError, "cost"),
        ({"output": "sigmoid", "cost": "log_likelihood"}, ValueError, "log_likelihood"),
        ({"output": "identity", "cost": "cross_entropy"}, ValueError, "cross_entropy"),
        ({"output": "softmax", "cost": "cross_entropy"}, ValueError, "cross_entropy"),
        ({"sizes": [4, 1], "output": "softmax", "cost": "quadratic"}, ValueError, "softmax"),
        ({"dtype": "float16"}, ValueError, "dtype"),
        ({"dtype": "int64"}, ValueError, "dtype"),
        ({"init": "zeros"}, ValueError, "init"),
        ({"leaky_slope": float("nan")}, ValueError, "leaky_slope"),
    ],
)
def test_invalid_network_is_refused(kwargs, error, match):
    arguments = {"sizes": [4, 5, 3], "output": "softmax", "cost": "log_likelihood", **kwargs}
    with pytest.raises(error, match=match):
        dp.Network(arguments.pop("sizes"), **arguments)


SIZES_4 = [4, 5, 6, 3]  # two hidden layers


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"activation": ["relu"]}, ValueError,
         r"activation: expected one value or one per hidden layer \(2 for sizes \[4, 5, 6, 3\]\), "
         "got 1"),
        ({"activation": ["relu", "tanh", "relu"]}, ValueError, r"hidden layer \(2 .*got 3"),
        ({"activation": ["relu", "swish"]}, ValueError, r"activation\[1\] \(hidden layer 2\)"),
        ({"activation": ["softmax", "relu"]}, ValueError, r"activation\[0\] \(hidden layer 1\)"),
        ({"activation": ["relu", None]}, ValueError, r"activation\[1\]"),
        ({"activation": np.array([["relu", "tanh"]])}, ValueError, "activation: expected one"),
        ({"activation": []}, ValueError, "got 0"),
        ({"leaky_slope": [0.1]}, ValueError, r"leaky_slope: expected .*\(2 for sizes"),
        ({"leaky_slope": [0.1, float("inf")]}, ValueError, r"leaky_slope\[1\] \(hidden layer 2\)"),
        ({"leaky_slope": [0.1, "0.2"]}, TypeError, r"leaky_slope\[1\]"),
        ({"leaky_slope": [0.1, True]}, TypeError, r"leaky_slope\[1\]"),
    ],
)  # fmt: skip
def test_invalid_per_layer_activations_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        dp.Network(SIZES_4, **kwargs)
    W = [np.ones((n_out, n_in)) for n_in, n_out in zip(SIZES_4, SIZES_4[1:])]
    with pytest.raises(error, match=match):
        dp.Network.from_params(W, [np.ones(len(w)) for w in W], **kwargs)


def test_per_layer_activations_are_kept_and_shown():
    net = dp.Network(SIZES_4, activation=("relu", "tanh"), leaky_slope=np.array([0.2, 0.3]))
    assert (net.activation, net.activations) == (("relu", "tanh"), ("relu", "tanh"))
    assert (net.leaky_slope, net.leaky_slopes) == ((0.2, 0.3), (0.2, 0.3))
    assert repr(net) == (
        "Network([4, 5, 6, 3], activation=['relu', 'tanh'], output='sigmoid', "
        "cost='quadratic', dtype='float64', leaky_slope=[0.2, 0.3])"
    )
    alike = dp.Network(SIZES_4, activation=["tanh", "tanh"], leaky_slope=[0.2, 0.2])
    assert (alike.activation, alike.leaky_slope) == ("tanh", 0.2)
    one = dp.Network(SIZES_4, activation="tanh", leaky_slope=0.2)
    assert alike.architecture == one.architecture
    assert repr(alike) == repr(dp.Network(SIZES_4, activation="tanh"))
    assert dp.Network([4, 3], activation=[]).activations == ()


def test_from_params_checks_shapes():
    W1, b1, W2, b2 = np.ones((5, 4)), np.ones(5), np.ones((3, 5)), np.ones(3)
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        dp.Network.from_params([W1, np.ones((3, 4))], [b1, b2])
    with pytest.raises(ValueError, match=r"biases\[0\]"):
        dp.Network.from_params([W1, W2], [np.ones(4), b2])
    with pytest.raises(ValueError, match="weights, biases"):
        dp.Network.from_params([W1, W2], [b1])
    with pytest.raises(ValueError, match=r"weights\[0\].*NaN"):
        dp.Network.from_params([W1 * np.nan, W2], [b1, b2])
    with pytest.raises(TypeError, match=r"weights\[0\]"):
        dp.Network.from_params([W1.astype(complex), W2], [b1, b2])


# ---------------------------------------------------------------- data
@pytest.mark.parametrize("method", ["predict", "cost", "gradients", "fit", "evaluate"])
def test_wrong_number_of_features(net, data, method):
    X, y = data
    call = getattr(net, method)
    with pytest.raises(ValueError, match=r"X: expected shape \(n_samples, 4\)"):
        call(X[:, :3]) if method == "predict" else call(X[:, :3], y)


@pytest.mark.parametrize("method", ["predict", "cost", "gradients", "fit"])
def test_empty_batch(net, method):
    X, y = np.empty((0, 4)), np.empty(0, dtype=int)
    call = getattr(net, method)
    with pytest.raises(ValueError, match="X: empty batch"):
        call(X) if method == "predict" else call(X, y)


@pytest.mark.parametrize("method", ["cost", "gradients", "fit", "sgd_step"])
def test_label_and_target_errors(net, data, method):
    X, y = data
    call = getattr(net, method)
    options = {"lr": 0.1} if method == "sgd_step" else {}
    with pytest.raises(ValueError, match=r"Y: class indices must lie in \[0, 3\)"):
        call(X, np.array([0, 1, 2, 3, 0, 1]), **options)
    with pytest.raises(ValueError, match="Y: class indices must lie"):
        call(X, -np.ones(6, dtype=int), **options)
    with pytest.raises(ValueError, match="Y: class indices must be whole numbers"):
        call(X, np.full(6, 0.5), **options)
    with pytest.raises(ValueError, match=r"Y: expected class indices of shape \(6,\)"):
        call(X, y[:5], **options)
    with pytest.raises(ValueError, match=r"Y: .*targets of shape \(6, 3\)"):
        call(X, np.zeros((5, 3)), **options)
    with pytest.raises(ValueError, match="Y: contains NaN or infinity"):
        call(X, np.full((6, 3), np.nan), **options)
    with pytest.raises(ValueError, match=r"Y: log_likelihood needs targets in \[0, 1\]"):
        call(X, np.full((6, 3), 2.0), **options)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["predict", "cost", "gradients", "fit", "evaluate"])
def test_non_finite_inputs(net, data, method, bad):
    X, y = data
    X = X.copy()
    X[2, 1] = bad
    call = getattr(net, method)
    with pytest.raises(ValueError, match="X: contains NaN or infinity"):
        call(X) if method == "predict" else call(X, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_in_the_last_chunk_of_a_long_predict(bad):
    # predict leaves X's check to the core (a non-finite x makes every z^1 non-finite),
    # which works through X in chunks of at most 8192 rows.
    net = dp.Network([4, 3], output="sigmoid", seed=0)
    X = np.zeros((20_000, 4))
    X[-1, 3] = bad
    with pytest.raises(ValueError, match="X: contains NaN or infinity"):
        net.predict(X)


def _trained_state(net: dp.Network) -> tuple:
    optimizer = net.optimizer
    state = None if optimizer is None else [array.copy() for array in optimizer.state]
    return net.params.copy(), optimizer, state, None if optimizer is None else optimizer.step


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rprop"])
@pytest.mark.parametrize("where", ["first batch", "last row", "held-out row"])
def test_non_finite_input_found_in_the_first_epoch_changes_nothing(bad, optimizer, where):
    # One process checks X in the first epoch's forward pass (a non-finite x makes every
    # z^1 non-finite): what that epoch trained before the bad row is undone, and the
    # network, its optimizer and the given optimizer are as fit found them. 9,000 rows
    # take three core calls; the bad row is the second visited, the last or held out.
    net = dp.Network([4, 6, 3], activation="relu", output="softmax", seed=0)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(9_000, 4)), rng.integers(0, 3, size=9_000)
    net.fit(X[:50], y[:50], epochs=1, optimizer=optimizer, lr=0.01)  # state to keep
    given = dp.optim.get("momentum", lr=0.02)
    given.bind(net.params.size, net.dtype)
    given.state[0][:] = 0.5
    before, given_before = _trained_state(net), (given.lr, given.step, given.state[0].copy())
    history = net.history
    order = np.random.default_rng(7).permutation(len(X))  # fit's order with seed=7
    row = {"first batch": order[1], "last row": len(X) - 1, "held-out row": None}[where]
    options = {"validation_fraction": 0.1} if where == "held-out row" else {}
    if row is None:  # the first of the validation split's rows
        row = np.sort(np.random.default_rng([7, 0x5EED]).permutation(len(X))[:900])[0]
    X[row, 2] = bad
    for chosen in (None, given):
        with pytest.raises(ValueError, match="X: contains NaN or infinity"):
            net.fit(X, y, epochs=3, optimizer=chosen, lr=0.5, seed=7, **options)
        params, optimizer_after, state, step = _trained_state(net)
        np.testing.assert_array_equal(params, before[0])
        assert optimizer_after is before[1] and step == before[3] and net.history is history
        assert optimizer_after.lr == 0.01
        for kept, expected in zip(state, before[2]):
            np.testing.assert_array_equal(kept, expected)
        assert (given.lr, given.step) == given_before[:2]
        np.testing.assert_array_equal(given.state[0], given_before[2])


def test_non_finite_input_without_an_epoch_is_refused(net, data):
    X, y = data
    X = X.copy()
    X[-1, 0] = np.nan
    with pytest.raises(ValueError, match="X: contains NaN or infinity"):
        net.fit(X, y, epochs=0)


def test_a_divergence_with_finite_inputs_stays_a_divergence():
    net = dp.Network([2, 3, 1], output="identity", cost="quadratic", seed=0)
    X, Y = np.ones((40, 2)), np.full((40, 1), 1e200)
    with pytest.raises(dp.DivergenceError):
        net.fit(X, Y, epochs=2, batch_size=10, lr=1.0)


def test_values_that_overflow_float32_are_refused(data):
    net32 = dp.Network([4, 3], output="sigmoid", dtype="float32", seed=0)
    X = data[0].copy()
    X[0, 0] = 1e300
    with pytest.raises(ValueError, match=r"X: contains NaN or infinity .*float32"):
        net32.predict(X)


def test_invalid_validation_data(net, data):
    X, y = data
    with pytest.raises(TypeError, match="validation_data"):
        net.fit(X, y, validation_data=X)
    with pytest.raises(ValueError, match=r"validation_data\[0\]: expected shape"):
        net.fit(X, y, validation_data=(X[:, :2], y))
    with pytest.raises(ValueError, match=r"validation_data\[1\]"):
        net.fit(X, y, validation_data=(X, y[:2]))


@pytest.mark.parametrize("dtype", [complex, object, "U3", "datetime64[s]"])
def test_non_real_dtypes_are_refused(net, data, dtype):
    X = data[0].astype(dtype) if dtype != "U3" else data[0].astype(str)
    with pytest.raises(TypeError, match="X: expected real numbers"):
        net.predict(X)


@pytest.mark.parametrize(
    "to_text",
    [
        pytest.param(lambda y: y.astype(str), id="str"),
        pytest.param(lambda y: [f"class {v}" for v in y], id="list"),
        pytest.param(lambda y: y.astype(str).astype(object), id="object"),
        pytest.param(lambda y: y.astype(bytes), id="bytes"),
    ],
)
def test_text_labels_get_told_to_encode_them(net, data, to_text):
    X, y = data
    for call in (net.fit, net.cost, net.gradients):
        with pytest.raises(TypeError, match=r"Y: class labels given as text .*DeltapropClassifier"):
            call(X, to_text(y))


def test_one_dimensional_sample_gets_a_hint(net):
    with pytest.raises(ValueError, match=r"reshape a single sample"):
        net.predict(np.zeros(4))


# ---------------------------------------------------------------- conversions
def awkward_layouts(X: np.ndarray):
    """The same values as X in layouts the core cannot take directly."""
    yield "fortran", np.asfortranarray(X)
    wide = np.zeros((X.shape[0], 2 * X.shape[1]))
    wide[:, ::2] = X
    yield "strided", wide[:, ::2]
    yield "negative-stride", X[::-1][::-1]
    yield "reversed", np.ascontiguousarray(X[::-1])[::-1]
    yield "byte-swapped", X.astype(X.dtype.newbyteorder())
    raw = np.zeros(X.size * 8 + 1, dtype=np.uint8)
    unaligned = raw[1:].view(np.float64).reshape(X.shape)
    unaligned[...] = X
    yield "unaligned", unaligned
    readonly = X.copy()
    readonly.flags.writeable = False
    yield "read-only", readonly
    yield "list", X.tolist()
    yield "float32", X.astype(np.float32)


def test_awkward_layouts_give_the_same_answers(net, data):
    X, y = data
    X = X.astype(np.float32).astype(np.float64)  # exactly representable in float32 too
    expected_out = net.predict(X)
    expected_cost, expected_dW, _ = net.gradients(X, y)
    for name, variant in awkward_layouts(X):
        snapshot = np.array(variant, copy=True)
        np.testing.assert_array_equal(net.predict(variant), expected_out, err_msg=name)
        cost, dW, _ = net.gradients(variant, y)
        assert cost == expected_cost, name
        np.testing.assert_array_equal(dW[0], expected_dW[0], err_msg=name)
        np.testing.assert_array_equal(np.asarray(variant), snapshot, err_msg=name)


def test_huge_finite_inputs_whose_sum_overflows_are_accepted():
    # X's sum overflows (the cheap finiteness test fails), but every z is finite.
    net = dp.Network.from_params(
        [np.full((3, 4), 1e-10)], [np.zeros(3)], output="softmax", cost="log_likelihood"
    )
    np.testing.assert_allclose(net.predict(np.full((2, 4), 1e308)), 1 / 3)


@pytest.mark.parametrize("method", ["predict", "cost", "gradients"])
def test_a_forward_pass_that_overflows_is_refused(method):
    net = dp.Network([1, 2], output="softmax", cost="log_likelihood", dtype="float32", seed=1904)
    X, call = np.array([[3e38]]), getattr(net, method)
    with pytest.raises(ValueError, match="the forward pass overflowed"):
        call(X) if method == "predict" else call(X, [0])


def test_integer_and_bool_inputs_are_converted(net):
    X_int = np.arange(8).reshape(2, 4)
    np.testing.assert_array_equal(net.predict(X_int), net.predict(X_int.astype(float)))
    X_bool = X_int % 2 == 0
    np.testing.assert_array_equal(net.predict(X_bool), net.predict(X_bool.astype(float)))


def test_fit_does_not_modify_user_arrays(net, data):
    X, y = data
    X_before, y_before = X.copy(), y.copy()
    net.fit(X, y, epochs=2, batch_size=4, lr=0.1)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_single_output_takes_one_dimensional_targets():
    net = dp.Network([2, 3, 1], activation="tanh", output="identity", seed=0)
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    targets = np.array([0.5, -1.0, 2.0])
    assert net.cost(X, targets) == net.cost(X, targets[:, None])


# ---------------------------------------------------------------- the private core
def test_core_takes_arrays_strictly(net, data):
    """_core never converts: a converted copy would silently drop writes into it."""
    core, params = net._core, net.params
    X = np.ascontiguousarray(data[0])
    Y = np.eye(3)[data[1]]
    out = np.empty((6, 3))
    with pytest.raises(TypeError):
        core.predict(params.astype(np.float32), X, out)
    with pytest.raises(TypeError):
        core.predict(params, np.asfortranarray(X[:, :3]).T.T, out)  # non-contiguous
    with pytest.raises(TypeError):
        core.predict(params, X, out.astype(np.float32))
    with pytest.raises(ValueError, match=r"params: expected shape \(43,\)"):
        core.predict(params[:-1], X, out)
    with pytest.raises(ValueError, match=r"out: expected shape \(6, 3\)"):
        core.predict(params, X, out[:5])
    readonly = params.copy()
    readonly.flags.writeable = False
    sgd = dp._core.UpdateRule("sgd", 0.1)
    step = np.zeros(1, dtype=np.int64)
    adam = dp._core.UpdateRule("adam", 0.1)
    by_sgd = dp._core.TrainSettings(batch_size=2, rule=sgd)
    by_adam = dp._core.TrainSettings(batch_size=2, rule=adam)
    with pytest.raises(ValueError, match="params: array is read-only"):
        core.train(readonly, [], step, X, Y, None, None, by_sgd)
    with pytest.raises(ValueError, match="order: index 6"):
        core.train(params.copy(), [], step, X, Y, None, np.array([0, 1, 2, 3, 4, 6]), by_sgd)
    with pytest.raises(ValueError, match="order: expected a non-empty 1-D array"):
        core.train(params.copy(), [], step, X, Y, None, np.arange(6).reshape(2, 3), by_sgd)
    with pytest.raises(ValueError, match="batch_size"):
        dp._core.TrainSettings(batch_size=0, rule=sgd)
    with pytest.raises(ValueError, match="dropout"):
        dp._core.TrainSettings(batch_size=2, rule=sgd, dropout=1.0)
    with pytest.raises(ValueError, match="state: this optimizer keeps 2 arrays, got 1"):
        core.train(params.copy(), [np.zeros(43)], step, X, Y, None, None, by_adam)
    with pytest.raises(ValueError, match=r"state: expected shape \(43,\)"):
        core.train(params.copy(), [np.zeros(43), np.zeros(42)], step, X, Y, None, None, by_adam)
    with pytest.raises(TypeError):
        mixed_state = [np.zeros(43), np.zeros(43, np.float32)]
        core.train(params.copy(), mixed_state, step, X, Y, None, None, by_adam)
    with pytest.raises(ValueError, match="optimizer: unknown method"):
        dp._core.UpdateRule("rmsprop", 0.1)


def test_core_train_takes_its_options_as_one_settings_object(net, data):
    """Mlp.train takes a TrainSettings, built from keyword arguments naming its fields; an
    unknown, missing or ill-typed field, a positional argument or another object in its
    place is a TypeError naming it, and nothing is trained."""
    core, X, Y = net._core, np.ascontiguousarray(data[0]), np.eye(3)[data[1]]
    sgd = dp._core.UpdateRule("sgd", 0.1)
    settings = dp._core.TrainSettings(batch_size=2, rule=sgd, dropout=0.25, seed=7)
    assert (settings.batch_size, settings.dropout, settings.seed, settings.first_batch) == (
        2, 0.25, 7, 0
    )  # fmt: skip
    assert "batch_size=2" in repr(settings) and "first_batch=0" in repr(settings)
    with pytest.raises(TypeError, match="unknown field 'batchsize'; the fields are batch_size"):
        dp._core.TrainSettings(batchsize=2, rule=sgd)
    with pytest.raises(TypeError, match="missing field 'rule'"):
        dp._core.TrainSettings(batch_size=2)
    with pytest.raises(TypeError, match=r"batch_size: expected an int >= 1, got 2\.5"):
        dp._core.TrainSettings(batch_size=2.5, rule=sgd)
    with pytest.raises(TypeError, match="rule: expected an UpdateRule, got 'sgd'"):
        dp._core.TrainSettings(batch_size=2, rule="sgd")
    with pytest.raises(TypeError):
        dp._core.TrainSettings(2, sgd)
    with pytest.raises(AttributeError):
        settings.batch_size = 3  # read-only: checked once, when built
    params, step = net.params.copy(), np.zeros(1, dtype=np.int64)
    expected = r"settings: expected a deltaprop\._core\.TrainSettings"
    for wrong in [{"batch_size": 2, "rule": sgd}, None, sgd]:
        with pytest.raises(TypeError, match=expected):
            core.train(params, [], step, X, Y, None, None, wrong)
    with pytest.raises(ValueError, match="shares, reduction: give both"):
        core.train(params, [], step, X, Y, None, None, settings, None, object())
    shares = np.array([[0], [2], [0]], dtype=np.int64)
    with pytest.raises(TypeError, match="reduction: expected an object with reduce"):
        core.train(params, [], step, X, Y, None, None, settings, shares, object())
    assert np.array_equal(params, net.params) and step[0] == 0
    cost, weight, diverged, stopped = core.train(params, [], step, X, Y, None, None, settings)
    assert (weight, diverged, stopped, step[0]) == (6, -1, -1, 3)
    assert np.isfinite(cost) and not np.array_equal(params, net.params)


def test_core_gradients_ignore_the_output_buffer_contents(net, data):
    X = np.ascontiguousarray(data[0])
    Y = np.eye(3)[data[1]]
    clean, garbage = np.zeros_like(net.params), np.full_like(net.params, np.nan)
    net._core.gradients(net.params, X, Y, clean)
    net._core.gradients(net.params, X, Y, garbage)
    np.testing.assert_array_equal(garbage, clean)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_core_finiteness_check_finds_every_position(dtype, threads):
    # Above 2^20 values per thread the check is split over the BLAS thread count.
    n = 2**21 + 3
    values = np.zeros(n, dtype=dtype)
    previous = dp.get_num_threads()
    dp.set_num_threads(threads)
    try:
        assert _core.all_finite(values) and _core.all_finite(values[:0])
        for position in [0, n // 2 - 1, n // 2, n // 2 + 1, n - 1]:
            for bad in [np.nan, np.inf, -np.inf]:
                values[position] = bad
                assert not _core.all_finite(values)
                values[position] = 0
        values[-1] = np.finfo(dtype).max  # the largest finite value is finite
        assert _core.all_finite(values)
    finally:
        dp.set_num_threads(previous)


def test_core_finiteness_check_takes_only_contiguous_floats():
    with pytest.raises(TypeError):
        _core.all_finite(np.zeros(4, dtype=np.int64))
    with pytest.raises(TypeError):
        _core.all_finite(np.zeros(8)[::2])
