"""Property-based boundary tests: every public entry point of `Network` and of the private
`_core`, driven by Hypothesis with arbitrary shapes (0 and mismatched included), dtypes (bool,
int, float16, longdouble, complex, object, strings, dates), memory layouts (Fortran order,
steps, negative and zero strides, unaligned, byte-swapped, read-only, nested lists) and values
(NaN, inf, huge, subnormal).

Each call either gives, bit for bit, the answer it gives for a clean copy of the same values,
``np.ascontiguousarray(x, dtype=net.dtype)``, or raises a clear ValueError or TypeError (a
`DivergenceError` only where training really diverges, and then for the clean copy too). The
caller's arrays are never modified. The core computes on whatever values it is given (the
network checks them); its properties are about types, layouts, shapes, aliasing and results.

The "ci" profile, the default, is derandomized (reproducible) and runs 15 x 400 = 6,000
examples. A longer, randomized run of 15 x 4,000 = 60,000 examples:

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_boundary.py
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from decimal import Decimal
from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import deltaprop as dp
from conftest import VALID_OUTPUT_COSTS
from deltaprop import _core

# ---------------------------------------------------------------- profiles
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    # No explain phase: it adds up to 20 s to each failing property and the shrunk example
    # already says what failed.
    "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    "print_blob": True,
}
settings.register_profile("ci", max_examples=400, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=4000, **_COMMON)
# Applied per test rather than loaded globally, so other test files keep Hypothesis' defaults.
boundary = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# ---------------------------------------------------------------- vocabulary
INT_MAX = 2**31 - 1  # BLAS's 32-bit integer
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
REAL_DTYPES = tuple(
    np.dtype(name)
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "longdouble",
    )
)  # fmt: skip
NON_REAL_DTYPES = tuple(
    np.dtype(name)
    for name in (
        "complex64", "complex128", "clongdouble", "object", "U3", "S3", "datetime64[s]",
        "timedelta64[s]",
    )
)  # fmt: skip
SPECIAL_FLOATS = (
    0.0, -0.0, 0.5, 1.0, 5e-324, 1e-310, 1e-40, 6.0e4, 7.0e4, 3.0e38, 3.5e38, 1e300,
    1.7976931348623157e308, -1e308, math.nan, math.inf, -math.inf,
)  # fmt: skip
PROBABILITY_COSTS = ("cross_entropy", "log_likelihood")
METHODS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}  # name: state arrays kept
# What pybind11 says when no overload takes the arguments: fine from the private core, but
# from the public API it means an argument reached C++ unchecked.
PYBIND_DISPATCH = ("incompatible function arguments", "incompatible constructor arguments")


# ---------------------------------------------------------------- strategies
def dtypes() -> st.SearchStrategy[np.dtype]:
    """Half the network's two float dtypes, then other real dtypes and non-real ones."""
    floats = st.sampled_from(FLOAT_DTYPES)
    return st.one_of(floats, floats, st.sampled_from(REAL_DTYPES), st.sampled_from(NON_REAL_DTYPES))


def special_values(dtype: np.dtype) -> list:
    with np.errstate(over="ignore"):
        values = list(np.array(SPECIAL_FLOATS).astype(dtype))
    if np.finfo(dtype).max > np.finfo(np.float64).max:
        values.append(dtype.type("1e4000"))  # finite in longdouble only
    return values


def elements(dtype: np.dtype, low: float, high: float, *, integral: bool = False):
    """Values of `dtype`: mostly in [low, high] (whole numbers if `integral`), sometimes
    anything the dtype holds (extremes, subnormals, NaN, inf)."""
    kind = dtype.kind
    if kind == "b":
        return st.booleans()
    anything = hnp.from_dtype(dtype)
    if kind in "iu":
        info = np.iinfo(dtype)
        typical = st.integers(max(math.ceil(low), int(info.min)), min(math.floor(high), info.max))
        return st.one_of(typical, typical, typical, anything)
    if kind == "f":
        if integral:
            typical = st.integers(math.ceil(low), math.floor(high)).map(dtype.type)
        else:
            typical = hnp.from_dtype(
                dtype, min_value=low, max_value=high, allow_nan=False, allow_infinity=False
            )
        return st.one_of(
            typical, typical, typical, st.sampled_from(special_values(dtype)), anything
        )
    if kind == "c":  # a zero imaginary part must be refused too: it is still complex input
        real = hnp.from_dtype(np.dtype(f"f{dtype.itemsize // 2}"), min_value=low, max_value=high)
        return st.one_of(real.map(dtype.type), anything)
    if kind == "O":
        return st.one_of(st.floats(low, high), st.integers(-3, 3), st.none(), st.text(max_size=2))
    return anything


def shapes_like(shape: tuple[int, ...]):
    """Mostly `shape`, sometimes any small shape (sides of 0, 0 to 3 dimensions)."""
    same = st.just(shape)
    return st.one_of(
        same, same, same, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)
    )


LAYOUTS = (
    "contiguous", "fortran", "strided", "reversed", "broadcast", "unaligned", "byteswapped",
    "list",
)  # fmt: skip


def lay_out(values: np.ndarray, layout: str, step: int = 2, readonly: bool = False):
    """The C-contiguous `values` in another memory layout (or as nested lists). "broadcast"
    repeats the first row with a zero stride, so it holds other values than `values`."""
    if layout == "list":
        return values.tolist()
    ndim = values.ndim
    if layout == "fortran":
        array = np.asfortranarray(values)
    elif layout == "strided" and ndim:
        holder = np.zeros(tuple(n * step for n in values.shape), dtype=values.dtype)
        array = holder[(slice(None, None, step),) * ndim]
        array[...] = values
    elif layout == "reversed" and ndim:
        flip = (slice(None, None, -1),) * ndim
        array = values[flip].copy()[flip]  # the same values with negative strides
    elif layout == "broadcast" and ndim and values.shape[0]:
        array = np.broadcast_to(values[:1], values.shape)
    elif layout == "unaligned" and values.dtype.itemsize > 1 and values.dtype.kind != "O":
        raw = np.zeros(values.nbytes + 1, dtype=np.uint8)
        array = raw[1:].view(values.dtype).reshape(values.shape)
        array[...] = values
    elif layout == "byteswapped":
        array = values.astype(values.dtype.newbyteorder())
    else:
        array = values.copy()
    if readonly:
        array.flags.writeable = False
    return array


@st.composite
def arrays_like(draw, shape, *, low=-3.0, high=3.0, integral=False, dtype=None):
    """An array_like meant to have `shape`: any dtype, sometimes another shape, any layout."""
    dtype = draw(dtypes()) if dtype is None else np.dtype(dtype)
    shape = draw(shapes_like(shape))
    values = draw(hnp.arrays(dtype, shape, elements=elements(dtype, low, high, integral=integral)))
    layout = draw(st.sampled_from(LAYOUTS))
    return lay_out(values, layout, step=draw(st.integers(2, 3)), readonly=draw(st.booleans()))


@st.composite
def network_specs(draw, outputs=None):
    """Keyword arguments of a small valid Network: 1-3 weight layers of 1-5 units."""
    pairs = [pair for pair in VALID_OUTPUT_COSTS if outputs is None or pair[0] in outputs]
    output, cost = draw(st.sampled_from(pairs))
    depth = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 5), min_size=depth + 1, max_size=depth + 1))
    if output == "softmax":
        sizes[-1] = max(sizes[-1], 2)
    return {
        "sizes": sizes,
        "activation": draw(st.sampled_from(dp.ACTIVATIONS)),
        "output": output,
        "cost": cost,
        "dtype": draw(st.sampled_from(["float32", "float64"])),
        "seed": draw(st.integers(0, 2**16)),
    }


@st.composite
def targets_for(draw, net: dp.Network, n: int):
    """Y for n samples: class indices (1-D) or targets (n, n_L); mostly valid."""
    n_out = net.sizes[-1]
    if draw(st.booleans()):
        return draw(arrays_like((n,), low=-1, high=max(n_out, 2), integral=True))
    if net.cost_name in PROBABILITY_COSTS:
        low, high = draw(st.sampled_from([(0.0, 1.0), (0.0, 1.0), (-0.5, 1.5)]))
    else:
        low, high = -3.0, 3.0
    return draw(arrays_like((n, n_out), low=low, high=high))


@st.composite
def fit_data(draw, net: dp.Network, n: int):
    """Clean, valid training data: X (n, n_0) and Y (class indices or targets)."""
    X = draw(hnp.arrays(np.float64, (n, net.sizes[0]), elements=st.floats(-3, 3)))
    n_out = net.sizes[-1]
    if n_out > 1 and draw(st.booleans()):
        return X, draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, n_out - 1)))
    low, high = (0.0, 1.0) if net.cost_name in PROBABILITY_COSTS else (-3.0, 3.0)
    return X, draw(hnp.arrays(np.float64, (n, n_out), elements=st.floats(low, high)))


# ---------------------------------------------------------------- oracles
def clean_copy(values, dtype) -> np.ndarray:
    """What the network must compute on: the values, converted once, C-contiguous."""
    with np.errstate(over="ignore", invalid="ignore"):  # 1e300 into float32 is inf: refused
        return np.ascontiguousarray(np.asarray(values), dtype=dtype)


def is_real(array: np.ndarray) -> bool:
    return array.dtype.kind in "biuf"


def expect_inputs(net: dp.Network, X, *, finite: bool = True):
    """(clean X, set()) if the network must take X, else (None, the exceptions allowed);
    X may hold NaN or infinity unless `finite`."""
    X = np.asarray(X)
    allowed = set()
    if not is_real(X):
        allowed.add(TypeError)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] != net.sizes[0]:
        allowed.add(ValueError)
    if allowed:
        return None, allowed
    clean = clean_copy(X, net.dtype)
    if finite and not np.isfinite(clean).all():
        return None, {ValueError}
    return clean, set()


def expect_labels(net: dp.Network, labels, n: int):
    """(class indices as a list of int, set()) or (None, the exceptions allowed)."""
    labels = np.asarray(labels)
    if not is_real(labels):
        return None, {TypeError}
    if labels.shape != (n,):
        return None, {ValueError}
    n_classes = max(net.sizes[-1], 2)
    values = labels.tolist()
    whole = all(math.isfinite(v) and v == math.floor(v) and 0 <= v < n_classes for v in values)
    if not whole:
        return None, {ValueError}
    return [int(v) for v in values], set()


def expect_evaluated_labels(net: dp.Network, labels, n: int):
    """What `evaluate` reads: class indices, or 2-D targets whose argmax (>= 0.5 with one
    output unit) is the class; (the classes as a list of int, set()) or (None, allowed)."""
    if np.ndim(labels) != 2:
        return expect_labels(net, labels, n)
    targets, allowed = expect_targets(net, labels, n)
    if allowed:
        return None, allowed
    if targets.shape[1] == 1:
        return [int(t >= 0.5) for t in targets[:, 0]], set()
    return targets.argmax(axis=1).tolist(), set()


def expect_targets(net: dp.Network, Y, n: int):
    """(clean (n, n_L) targets, set()) or (None, the exceptions allowed)."""
    Y = np.asarray(Y)
    if not is_real(Y):
        return None, {TypeError}
    n_out = net.sizes[-1]
    if Y.ndim == 1 and n_out == 1:  # one output unit: 1-D Y holds the targets themselves
        Y = Y.reshape(-1, 1)
    if Y.ndim == 1:
        labels, allowed = expect_labels(net, Y, n)
        if allowed:
            return None, allowed
        clean = np.zeros((n, n_out), dtype=net.dtype)
        clean[np.arange(n), labels] = 1
        return clean, set()
    if Y.shape != (n, n_out):
        return None, {ValueError}
    clean = clean_copy(Y, net.dtype)
    if not np.isfinite(clean).all():
        return None, {ValueError}
    if net.cost_name in PROBABILITY_COSTS and ((clean < 0) | (clean > 1)).any():
        return None, {ValueError}
    return clean, set()


def expect_data(net: dp.Network, X, Y, *, finite_X: bool = True):
    """(clean X, clean Y, set()) or (None, None, the exceptions allowed): X is checked first
    (for NaN and infinity too if `finite_X`)."""
    clean_X, allowed = expect_inputs(net, X, finite=finite_X)
    if allowed:
        return None, None, allowed
    clean_Y, allowed = expect_targets(net, Y, len(clean_X))
    return clean_X, clean_Y, allowed


def expect_weights(net: dp.Network, weights, n: int):
    """(clean sample weights or None, set()) or (None, the exceptions allowed)."""
    if weights is None:
        return None, set()
    weights = np.asarray(weights)
    if not is_real(weights):
        return None, {TypeError}
    if weights.ndim == 0:  # a scalar weighs every sample alike
        weights = np.full(n, weights)
    if weights.shape != (n,):
        return None, {ValueError}
    clean = clean_copy(weights, net.dtype)
    with np.errstate(over="ignore"):
        if not np.isfinite(clean).all() or (clean < 0).any() or not clean.sum() > 0:
            return None, {ValueError}
    return clean, set()


# ---------------------------------------------------------------- checks
def attempt(function, *args, **kwargs):
    """(result, None) or (None, the exception raised): every exception is judged by a check."""
    try:
        return function(*args, **kwargs), None
    except Exception as error:
        return None, error


def check_outcome(error, allowed, *, public: bool = True) -> None:
    """No exception if nothing is `allowed`, else exactly one of the `allowed` types, with a
    message of the library's own (not pybind11's dispatch error) from the public API."""
    event("accepted" if error is None else f"refused with {type(error).__name__}")
    if not allowed:
        if error is not None:
            raise AssertionError(f"valid input refused: {type(error).__name__}: {error}") from error
        return
    names = sorted(kind.__name__ for kind in allowed)
    if error is None:
        raise AssertionError(f"accepted; expected {' or '.join(names)}")
    if type(error) not in allowed:
        raise AssertionError(
            f"raised {type(error).__name__}: {error}; expected {' or '.join(names)}"
        ) from error
    if public and any(text in str(error) for text in PYBIND_DISPATCH):
        raise AssertionError(f"pybind11's dispatch error reaches the user: {error}") from error


def check_same_outcome(
    error, expected_error, *, may_diverge: bool = False, may_overflow: bool = False
) -> None:
    """The call on awkward input fails exactly when (and as) the call on clean input does;
    the clean call may fail only with a DivergenceError, and only when training, or (with
    ``may_overflow``) with a ValueError saying that the cost or its gradient overflowed."""
    if expected_error is not None:
        clear = (may_diverge and isinstance(expected_error, dp.DivergenceError)) or (
            may_overflow
            and type(expected_error) is ValueError
            and "overflowed" in str(expected_error)
        )
        if not clear:
            raise AssertionError(
                f"clean input refused: {type(expected_error).__name__}: {expected_error}"
            ) from expected_error
    event("accepted" if error is None else f"refused with {type(error).__name__}")
    if type(error) is not type(expected_error):
        raise AssertionError(
            f"{type(error).__name__}: {error}; the clean copy gave "
            f"{type(expected_error).__name__}: {expected_error}"
        ) from error


def assert_same(actual, expected) -> None:
    """Equal bit for bit: dtype, shape and every byte (the sign of zero, NaN)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if actual.tobytes() != expected.tobytes():
        np.testing.assert_array_equal(actual, expected)
        raise AssertionError(f"differ in the sign of a zero or a NaN: {actual} != {expected}")


def assert_same_history(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in actual.keys() - {"time"}:
        assert_same(actual[key], expected[key])


def _bytes_of(array: np.ndarray):
    return array.tolist() if array.dtype.kind == "O" else array.tobytes()


class Frozen:
    """Copies of arguments (and of the buffers under views) to prove a call left them alone."""

    def __init__(self, *objects) -> None:
        self.records = []
        for obj in objects:
            if isinstance(obj, np.ndarray):
                base = obj.base if isinstance(obj.base, np.ndarray) else None
                self.records.append(
                    (
                        obj,
                        _bytes_of(obj),
                        (obj.dtype, obj.shape, obj.strides, obj.flags.writeable, obj.ctypes.data),
                        base,
                        None if base is None else _bytes_of(base),
                    )
                )
            else:
                self.records.append((obj, copy.deepcopy(obj), None, None, None))

    def assert_unchanged(self) -> None:
        for index, (obj, content, layout, base, base_content) in enumerate(self.records):
            if layout is None:  # a list, a Python scalar or None; a NaN is itself
                assert obj is content or obj == content, f"argument {index} was modified"
                continue
            now = (obj.dtype, obj.shape, obj.strides, obj.flags.writeable, obj.ctypes.data)
            assert now == layout, f"argument {index} changed from {layout} to {now}"
            assert _bytes_of(obj) == content, f"argument {index} was modified"
            if base is not None:
                assert _bytes_of(base) == base_content, f"the buffer under argument {index} changed"


def flat_gradients(dW, db) -> np.ndarray:
    return np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(dW, db)])


def twin_core(net: dp.Network):
    """A new core with the network's architecture (fresh workspaces)."""
    return type(net._core)(
        list(net.sizes),
        list(net.activations),
        net.output,
        net.cost_name,
        list(net.leaky_slopes),
    )


# ================================================================ Network
@boundary
@given(spec=network_specs(), data=st.data())
def test_predict_takes_any_array(spec, data):
    """predict and predict_classes: the clean copy's answer, or a clear refusal."""
    net = dp.Network(**spec)
    n = data.draw(st.integers(1, 6), label="n")
    X = data.draw(arrays_like((n, net.sizes[0])), label="X")
    frozen = Frozen(X)
    clean, allowed = expect_inputs(net, X)
    out, error = attempt(net.predict, X)
    frozen.assert_unchanged()
    if clean is None:
        check_outcome(error, allowed)
        return
    # Finite inputs may still overflow the forward pass (3e38 in float32): refused exactly
    # as the clean copy is, never returned.
    expected, expected_error = attempt(net.predict, clean)
    check_same_outcome(error, expected_error, may_overflow=True)
    if expected_error is not None:
        return
    assert_same(out, expected)
    classes, error = attempt(net.predict_classes, X)
    check_outcome(error, set())
    assert_same(classes, net.predict_classes(clean))
    frozen.assert_unchanged()


@boundary
@given(spec=network_specs(), data=st.data())
def test_cost_and_gradients_take_any_arrays(spec, data):
    """cost and gradients with any X and Y (class indices or targets)."""
    net = dp.Network(**spec)
    n = data.draw(st.integers(1, 6), label="n")
    X = data.draw(arrays_like((n, net.sizes[0])), label="X")
    Y = data.draw(targets_for(net, n), label="Y")
    frozen = Frozen(X, Y)
    clean_X, clean_Y, allowed = expect_data(net, X, Y)
    cost, cost_error = attempt(net.cost, X, Y)
    result, error = attempt(net.gradients, X, Y)
    frozen.assert_unchanged()
    if allowed:
        check_outcome(cost_error, allowed)
        check_outcome(error, allowed)
        return
    # Finite inputs may still overflow the cost or a gradient: refused, never returned.
    expected_cost, expected_error = attempt(net.cost, clean_X, clean_Y)
    check_same_outcome(cost_error, expected_error, may_overflow=True)
    if expected_error is None:
        assert np.isfinite(cost)
        assert_same(cost, expected_cost)
    expected, expected_error = attempt(net.gradients, clean_X, clean_Y)
    check_same_outcome(error, expected_error, may_overflow=True)
    if expected_error is None:
        assert np.isfinite(result[0]) and np.isfinite(flat_gradients(*result[1:])).all()
        assert_same(result[0], expected[0])
        assert_same(flat_gradients(*result[1:]), flat_gradients(*expected[1:]))


@boundary
@given(spec=network_specs(), data=st.data())
def test_sgd_step_takes_any_arrays(spec, data):
    """sgd_step updates the parameters as it does for the clean copy, or changes nothing."""
    net, twin = dp.Network(**spec), dp.Network(**spec)
    n = data.draw(st.integers(1, 6), label="n")
    X = data.draw(arrays_like((n, net.sizes[0])), label="X")
    Y = data.draw(targets_for(net, n), label="Y")
    options = {
        "lr": data.draw(st.floats(1e-3, 3.0), label="lr"),
        "lmbda": data.draw(st.sampled_from([0.0, 0.0, 0.1, 5.0]), label="lmbda"),
        "n": data.draw(st.one_of(st.none(), st.integers(1, 100)), label="n_total"),
    }
    frozen = Frozen(X, Y)
    clean_X, clean_Y, allowed = expect_data(net, X, Y)
    cost, error = attempt(net.sgd_step, X, Y, **options)
    frozen.assert_unchanged()
    if allowed:
        check_outcome(error, allowed)
        assert_same(net.params, twin.params)
        return
    expected_cost, expected_error = attempt(twin.sgd_step, clean_X, clean_Y, **options)
    check_same_outcome(error, expected_error, may_diverge=True)
    assert_same(net.params, twin.params)
    if error is None:
        assert_same(cost, expected_cost)


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")


@boundary
@given(spec=network_specs(), data=st.data())
def test_fit_takes_any_arrays(spec, data):
    """fit with any X, Y, sample_weight and validation_data, and valid options: the clean
    copy's history, parameters and optimizer state, or a clear refusal that trains nothing."""
    net, twin = dp.Network(**spec), dp.Network(**spec)
    n = data.draw(st.integers(1, 6), label="n")
    X = data.draw(arrays_like((n, net.sizes[0])), label="X")
    Y = data.draw(targets_for(net, n), label="Y")
    weights = data.draw(st.one_of(st.none(), arrays_like((n,), low=0.0, high=3.0)), label="w")
    validation = data.draw(st.sampled_from(["none", "fraction", "data"]), label="validation")
    options = {
        "epochs": data.draw(st.integers(0, 2), label="epochs"),
        "batch_size": data.draw(st.integers(1, 7), label="batch_size"),
        "optimizer": data.draw(st.sampled_from(OPTIMIZERS), label="optimizer"),
        "lr": data.draw(st.one_of(st.none(), st.floats(1e-3, 1.0)), label="lr"),
        "lmbda": data.draw(st.sampled_from([0.0, 0.1]), label="lmbda"),
        "l1": data.draw(st.sampled_from([0.0, 0.01]), label="l1"),
        "dropout": data.draw(st.sampled_from([0.0, 0.25]), label="dropout"),
        "shuffle": data.draw(st.booleans(), label="shuffle"),
        "seed": data.draw(st.integers(0, 2**32), label="seed"),
    }
    arguments, clean_arguments = [X, Y], {}
    if validation == "fraction":
        options["validation_fraction"] = 0.34
    elif validation == "data":
        m = data.draw(st.integers(1, 4), label="m")
        X_val = data.draw(arrays_like((m, net.sizes[0])), label="X_val")
        Y_val = data.draw(targets_for(net, m), label="Y_val")
        arguments += [X_val, Y_val]
    frozen = Frozen(*arguments, weights)

    # fit finds NaN or infinity in X (in one process) last: in the first epoch's forward pass.
    clean_X, clean_Y, allowed = expect_data(net, X, Y, finite_X=False)
    if not allowed:
        clean_w, allowed = expect_weights(net, weights, len(clean_X))
    if not allowed and validation == "data":
        clean_Xv, clean_Yv, allowed = expect_data(net, X_val, Y_val)
        clean_arguments["validation_data"] = (clean_Xv, clean_Yv)
    if not allowed and validation == "fraction":
        n_val = round(0.34 * len(clean_X))
        if not 1 <= n_val < len(clean_X):
            allowed = {ValueError}  # the split would leave a side empty
    if not allowed and not np.isfinite(clean_X).all():
        allowed = {ValueError}
    validation_kwargs = {"validation_data": (X_val, Y_val)} if validation == "data" else {}
    history, error = attempt(net.fit, X, Y, sample_weight=weights, **validation_kwargs, **options)
    frozen.assert_unchanged()
    if allowed:
        check_outcome(error, allowed)
        assert_same(net.params, twin.params)
        assert net.optimizer is None and net.history == twin.history  # as before the call
        return
    expected, expected_error = attempt(
        twin.fit, clean_X, clean_Y, sample_weight=clean_w, **clean_arguments, **options
    )
    check_same_outcome(error, expected_error, may_diverge=True)
    assert_same(net.params, twin.params)
    assert np.isfinite(net.params).all()
    assert_same_history(net.history, twin.history)
    if error is None:
        assert_same_history(history, expected)
        assert net.optimizer.step == twin.optimizer.step
        for state, expected_state in zip(net.optimizer.state, twin.optimizer.state):
            assert_same(state, expected_state)


def _choices(valid, invalid=()):
    """(strategy of valid values, strategy of invalid values or None) for one argument."""
    return st.one_of(*valid), (st.one_of(*invalid) if invalid else None)


@st.composite
def arguments_from(draw, table: dict, *, max_size: int = 4):
    """(kwargs, the name of the one invalid argument or None): some arguments of `table`,
    all valid but at most one, so that every invalid value is tried on its own."""
    names = draw(st.lists(st.sampled_from(sorted(table)), max_size=max_size, unique=True))
    breakable = [name for name in names if table[name][1] is not None]
    broken = draw(st.sampled_from([None, None, *breakable]))
    kwargs = {name: draw(table[name][1 if name == broken else 0]) for name in names}
    return kwargs, broken


_NOT_REAL = st.sampled_from([True, "0.1", 1j, Decimal("0.1"), [0.1]])
FIT_OPTIONS = {
    "epochs": _choices(
        [st.integers(0, 2), st.just(np.int64(1))], [st.sampled_from([-1, 1.0, True, "2", None])]
    ),
    "batch_size": _choices(
        [
            st.integers(1, 8),
            st.sampled_from([2**31, 2**63, 2**64 - 1, 2**64, 10**30, np.uint64(3), None]),
        ],
        [st.sampled_from([0, -1, 2.0, True, "4"])],  # None is every row: valid
    ),
    "lr": _choices(
        [st.none(), st.floats(1e-4, 1.0), st.sampled_from([np.float32(0.1), Fraction(1, 10), 1])],
        [st.sampled_from([0.0, -0.1, math.nan, math.inf]), _NOT_REAL],
    ),
    "lmbda": _choices(
        [st.sampled_from([0, 0.0, 0.5, np.float16(0.1), Fraction(1, 2)])],
        [st.sampled_from([-1e-9, math.nan, math.inf, None]), _NOT_REAL],
    ),
    "l1": _choices(
        [st.sampled_from([0, 0.0, 0.01])], [st.sampled_from([-1.0, math.nan, -math.inf]), _NOT_REAL]
    ),
    "dropout": _choices(
        [st.sampled_from([0.0, 0.5, 0.999, np.float32(0.25)])],
        [st.sampled_from([1.0, -0.1, math.nan, 2]), _NOT_REAL],
    ),
    # Only momentum optimizers take momentum: the test then asks for one.
    "momentum": _choices(
        [st.sampled_from([None, 0.0, 0.9])], [st.sampled_from([1.0, -0.5, math.nan, "0.9", 1j])]
    ),
    "validation_fraction": _choices(
        [st.sampled_from([0.0, 0.25])],
        [st.sampled_from([1.0, -0.1, math.nan, 0.01, "0.2"])],  # 0.01 of 8 leaves no sample
    ),
    "optimizer": _choices(
        [st.sampled_from([None, *OPTIMIZERS]), st.builds(dp.optim.Adam)],
        [st.sampled_from(["rmsprop", 3, "SGD"])],
    ),
    "shuffle": _choices([st.sampled_from([True, False, 0, None])]),
    "seed": _choices(
        [st.sampled_from([None, 0, 2**70, np.int64(5)]), st.integers(0, 2**64)],
        [st.sampled_from([-1, 1.5, "seed"])],
    ),
    "early_stopping": _choices([st.booleans()]),
    "diagnostics": _choices([st.booleans()], [st.sampled_from(["yes", 1, None])]),
    "min_delta": _choices([st.sampled_from([0.0, 0.1])], [st.sampled_from([-1.0, math.nan])]),
    "patience": _choices([st.integers(1, 3)], [st.sampled_from([0, 1.5, None])]),
    "callbacks": _choices(
        [st.sampled_from([(), [lambda epoch, metrics: False], lambda epoch, metrics: None])],
        [st.sampled_from([[3], 3])],
    ),
}
SGD_STEP_OPTIONS = {
    "lr": _choices(
        [st.floats(1e-4, 1.0), st.sampled_from([np.float32(0.1), Fraction(1, 10), 1, 1e300])],
        [st.sampled_from([0.0, -0.1, math.nan, math.inf, None]), _NOT_REAL],
    ),
    "lmbda": FIT_OPTIONS["lmbda"],
    "n": _choices(
        [st.none(), st.integers(1, 10), st.just(np.int32(4))],
        [st.sampled_from([0, -1, 2.5, True, "8"])],
    ),
}


@boundary
@given(spec=network_specs(), data=st.data())
def test_fit_and_sgd_step_options(spec, data):
    """Every valid option value trains (or raises DivergenceError); every invalid one raises
    a clear ValueError or TypeError and leaves the parameters alone."""
    net = dp.Network(**spec)
    X, Y = data.draw(fit_data(net, 8), label="data")
    method = data.draw(st.sampled_from(["fit", "sgd_step"]), label="method")
    table = FIT_OPTIONS if method == "fit" else SGD_STEP_OPTIONS
    options, broken = data.draw(arguments_from(table), label="options, invalid")
    if "momentum" in options:
        options["optimizer"] = "momentum"
        if broken == "optimizer":
            return  # replaced: nothing invalid left to try
    if method == "fit":
        options.setdefault("epochs", 1)
    else:
        options.setdefault("lr", 0.1)
    before = net.params.copy()
    frozen = Frozen(X, Y)
    _, error = attempt(getattr(net, method), X, Y, **options)
    frozen.assert_unchanged()
    if broken is None and isinstance(error, dp.DivergenceError):
        event("diverged")
    else:
        check_outcome(error, set() if broken is None else {ValueError, TypeError})
    if broken is not None:
        assert_same(net.params, before)
    assert np.isfinite(net.params).all()


@boundary
@given(spec=network_specs(), data=st.data())
def test_sample_weights_are_scale_invariant(spec, data):
    """fit minimises sum_i w_i C_i / sum_i w_i: scaling every weight by a power of two (exact
    in floating point) must train identically, however large or small the weights get, or
    be refused with a ValueError."""
    net, twin = dp.Network(**spec), dp.Network(**spec)
    n = data.draw(st.integers(1, 6), label="n")
    X, Y = data.draw(fit_data(net, n), label="data")
    counts = data.draw(st.lists(st.integers(0, 8), min_size=n, max_size=n), label="w")
    weights = np.array(counts, dtype=np.float64)
    weights[0] += not weights.any()  # a positive sum
    # Weights of at most 8 * 2**k stay finite, and at least 2**k stay normal, in the dtype.
    top = 124 if net.dtype == np.float32 else 1020
    exponent = data.draw(st.integers(-100, top), label="k")
    scaled = weights * 2.0**exponent
    options = {
        "epochs": data.draw(st.integers(1, 2), label="epochs"),
        "batch_size": data.draw(st.integers(1, 7), label="batch_size"),
        "optimizer": data.draw(st.sampled_from(OPTIMIZERS), label="optimizer"),
        "shuffle": data.draw(st.booleans(), label="shuffle"),
        "dropout": data.draw(st.sampled_from([0.0, 0.25]), label="dropout"),
    }
    expected, expected_error = attempt(twin.fit, X, Y, sample_weight=weights, **options)
    history, error = attempt(net.fit, X, Y, sample_weight=scaled, **options)
    if isinstance(error, ValueError):  # refusing weights too large to add up is clear
        check_outcome(error, {ValueError})
        assert_same(net.params, dp.Network(**spec).params)
        return
    check_same_outcome(error, expected_error, may_diverge=True)
    assert_same(net.params, twin.params)
    if error is None:
        assert_same_history(history, expected)


@boundary
@given(spec=network_specs(), data=st.data())
def test_evaluate_takes_any_arrays(spec, data):
    """evaluate(X, labels): the clean copy's accuracy, or a clear refusal."""
    net = dp.Network(**spec)
    n = data.draw(st.integers(1, 6), label="n")
    X = data.draw(arrays_like((n, net.sizes[0])), label="X")
    labels = data.draw(
        arrays_like((n,), low=-1, high=max(net.sizes[-1], 2), integral=True), label="labels"
    )
    frozen = Frozen(X, labels)
    clean_X, allowed = expect_inputs(net, X)
    if not allowed:
        clean_labels, allowed = expect_evaluated_labels(net, labels, len(clean_X))
    accuracy, error = attempt(net.evaluate, X, labels)
    frozen.assert_unchanged()
    if allowed:
        check_outcome(error, allowed)
        return
    # Finite inputs may still overflow the forward pass (3e38 in float32): refused exactly
    # as the clean copy's classes are, as predict is.
    classes, expected_error = attempt(net.predict_classes, clean_X)
    check_same_outcome(error, expected_error, may_overflow=True)
    if expected_error is not None:
        return
    expected = float(np.mean(classes == np.array(clean_labels)))
    assert type(accuracy) is float
    assert_same(accuracy, expected)


def _sizes_of(weights, biases):
    """Layer sizes that from_params must infer, or None if the shapes do not chain."""
    if len(weights) == 0 or len(weights) != len(biases):
        return None
    if weights[0].ndim != 2 or weights[0].shape[1] < 1:
        return None
    sizes = [weights[0].shape[1]]
    for W, b in zip(weights, biases):
        if W.ndim != 2 or W.shape[1] != sizes[-1] or W.shape[0] < 1 or b.shape != (W.shape[0],):
            return None
        sizes.append(W.shape[0])
    return sizes


@boundary
@given(data=st.data())
def test_from_params_takes_any_arrays(data):
    """Network.from_params copies any real arrays, converted once to the dtype (None: float32
    if every array holds float32, whatever its byte order), or refuses them clearly."""
    output, cost = data.draw(st.sampled_from(VALID_OUTPUT_COSTS), label="output, cost")
    activation = data.draw(st.sampled_from(dp.ACTIVATIONS), label="activation")
    depth = data.draw(st.integers(1, 3), label="depth")
    sizes = data.draw(st.lists(st.integers(1, 5), min_size=depth + 1, max_size=depth + 1))
    if output == "softmax":
        sizes[-1] = max(sizes[-1], 2)
    dtype = data.draw(st.sampled_from([None, None, "float32", "float64"]), label="dtype")
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        weights.append(data.draw(arrays_like((n_out, n_in)), label="W"))
        biases.append(data.draw(arrays_like((n_out,)), label="b"))
    if data.draw(st.integers(0, 9), label="drop a layer's array") == 0:
        (weights if data.draw(st.booleans()) else biases).pop()
    container = data.draw(st.sampled_from([list, tuple]), label="container")
    frozen = Frozen(*weights, *biases)
    net, error = attempt(
        dp.Network.from_params,
        container(weights),
        container(biases),
        activation=activation,
        output=output,
        cost=cost,
        dtype=dtype,
    )
    frozen.assert_unchanged()

    arrays = [np.asarray(a) for a in weights + biases]
    if not all(is_real(a) for a in arrays):
        return check_outcome(error, {TypeError})
    inferred = _sizes_of(arrays[: len(weights)], arrays[len(weights) :])
    if inferred is None or (output == "softmax" and inferred[-1] < 2):
        return check_outcome(error, {ValueError})
    if dtype is None:
        all_float32 = all(a.dtype.kind == "f" and a.dtype.itemsize == 4 for a in arrays)
        dtype = "float32" if all_float32 else "float64"
    cleans = [clean_copy(a, dtype) for a in arrays]
    if not all(np.isfinite(c).all() for c in cleans):
        return check_outcome(error, {ValueError})
    check_outcome(error, set())
    assert net.dtype == np.dtype(dtype)
    assert net.sizes == tuple(inferred)
    for actual, expected in zip(net.weights + net.biases, cleans):
        assert_same(actual, expected)
    net.params[...] = 0.25  # the network holds copies
    frozen.assert_unchanged()


SIZE_ERRORS = (0, -1, True, 2.0, "3", None, 2**31, 2**32, 2**63, 2**64, 10**30, -(2**70))
CONSTRUCTOR_ARGUMENTS = {
    "activation": _choices(
        [st.sampled_from(dp.ACTIVATIONS)], [st.sampled_from(["softmax", "Tanh", 3, None])]
    ),
    "dtype": _choices(
        [
            st.sampled_from(
                ["float32", "float64", np.float32, np.float64, "f4", "d", np.dtype("=f8")]
            )
        ],
        [st.sampled_from(["float16", "int64", complex, "banana", 3])],
    ),
    "init": _choices([st.sampled_from(dp.INITS)], [st.sampled_from(["zeros", None, 1])]),
    "seed": _choices(
        [st.sampled_from([None, 0, 2**70, np.int64(5)]), st.integers(0, 2**64)],
        [st.sampled_from([-1, 1.5, "seed"])],
    ),
    "leaky_slope": _choices(
        [
            st.floats(-10, 10),
            st.sampled_from([0, 1, 1e308, -1e308, np.float32(0.1), Fraction(1, 3)]),
        ],
        [st.sampled_from([math.nan, math.inf, True, None, "0.1", 1j])],
    ),
}
INVALID_PAIRS = (
    ("relu", "quadratic"), (None, "quadratic"), ("sigmoid", "hinge"),
    ("sigmoid", "log_likelihood"), ("identity", "cross_entropy"), ("softmax", "cross_entropy"),
)  # fmt: skip


@boundary
@given(data=st.data())
def test_network_constructor_takes_any_arguments(data):
    """Network(...) builds exactly the network asked for, or raises a clear ValueError or
    TypeError (never pybind11's dispatch error); a huge size is refused before allocating."""
    entries = data.draw(
        st.lists(st.one_of(st.integers(1, 5), st.sampled_from([np.int64(2), np.uint8(3)])),
                 min_size=2, max_size=5),
        label="sizes",
    )  # fmt: skip
    kwargs, broken = data.draw(arguments_from(CONSTRUCTOR_ARGUMENTS, max_size=5), label="kwargs")
    what = data.draw(st.sampled_from(["valid", "valid", "size", "pair", "container"]))
    output, cost = data.draw(st.sampled_from(VALID_OUTPUT_COSTS), label="output, cost")
    sizes = entries
    if broken is None and what == "size":
        index = data.draw(st.integers(0, len(entries) - 1), label="index")
        sizes = [*entries[:index], data.draw(st.sampled_from(SIZE_ERRORS)), *entries[index + 1 :]]
        broken = "sizes"
    elif broken is None and what == "pair":
        output, cost = data.draw(st.sampled_from(INVALID_PAIRS), label="output, cost")
        broken = "output"
    elif broken is None and what == "container":
        sizes = data.draw(st.sampled_from([entries[:1], [], "23", 3, None, iter(entries)]))
        broken = "sizes"
    if output == "softmax" and broken != "sizes" and sizes[-1] == 1:
        broken = "output"  # softmax needs two outputs
    net, error = attempt(dp.Network, sizes, output=output, cost=cost, **kwargs)
    if broken is not None:
        return check_outcome(error, {ValueError, TypeError})
    check_outcome(error, set())
    assert net.sizes == tuple(int(n) for n in sizes)
    assert (net.output, net.cost_name) == (output, cost)
    assert net.activation == kwargs.get("activation", "sigmoid")
    assert net.dtype == np.dtype(kwargs.get("dtype", "float64"))
    assert net.leaky_slope == float(kwargs.get("leaky_slope", 0.01))
    assert np.isfinite(net.params).all()
    if kwargs.get("seed") is not None:
        assert_same(net.params, dp.Network(sizes, output=output, cost=cost, **kwargs).params)


# ================================================================ the private core
@boundary
@given(data=st.data())
def test_core_constructors(data):
    """Mlp32/Mlp64 report the exact parameter count of any architecture BLAS can take with
    at most 2**48 parameters (no machine holds more), and refuse the others (a count past
    2**64 must not wrap around); UpdateRule keeps what it is given or refuses it."""
    cls = data.draw(st.sampled_from([_core.Mlp32, _core.Mlp64]), label="class")
    size = st.one_of(
        st.integers(1, 5),
        st.integers(1, INT_MAX),
        st.sampled_from([0, -1, 2**16, INT_MAX, 2**31, 2**32 + 1, 2**63, 2**64]),
    )
    # Sizes near BLAS's limit make counts near and past 2**64 (six of them: past).
    near_limit = st.integers(INT_MAX - 2**16, INT_MAX)
    sizes = data.draw(
        st.one_of(
            st.lists(st.integers(1, 5), min_size=2, max_size=6),
            st.lists(near_limit, min_size=2, max_size=8),
            st.lists(size, max_size=8),
        ),
        label="sizes",
    )
    # One activation and one slope per hidden layer, mostly; any number of them sometimes.
    n_hidden = max(len(sizes) - 2, 0)
    count = data.draw(st.one_of(st.just(n_hidden), st.integers(0, 9)), label="count")
    name = st.sampled_from([*dp.ACTIVATIONS, "softmax", "swish"])
    activations = data.draw(st.lists(name, min_size=count, max_size=count), label="activations")
    output, cost = data.draw(
        st.one_of(
            st.sampled_from(VALID_OUTPUT_COSTS),
            st.tuples(
                st.sampled_from([*dp.OUTPUTS, "relu"]), st.sampled_from([*dp.COSTS, "hinge"])
            ),
        ),
        label="output, cost",
    )
    slope = st.one_of(st.floats(), st.integers(-3, 3))
    n_slopes = data.draw(st.one_of(st.just(n_hidden), st.integers(0, 9)), label="n_slopes")
    slopes = data.draw(st.lists(slope, min_size=n_slopes, max_size=n_slopes), label="slopes")
    mlp, error = attempt(cls, sizes, activations, output, cost, slopes)
    exact = sum(n_out * n_in + n_out for n_in, n_out in zip(sizes, sizes[1:]))
    valid = (
        len(sizes) >= 2
        and all(1 <= n <= INT_MAX for n in sizes)
        and len(activations) == len(slopes) == n_hidden
        and all(name in dp.ACTIVATIONS for name in activations)
        and (output, cost) in VALID_OUTPUT_COSTS
        and (output != "softmax" or sizes[-1] >= 2)
        and exact <= 2**48
    )
    if not valid:
        check_outcome(error, {ValueError, TypeError}, public=False)
    else:
        check_outcome(error, set())
        assert mlp.n_params == exact
        assert list(mlp.sizes) == sizes
        assert (mlp.activations, mlp.output, mlp.cost_name) == (activations, output, cost)
        assert_same(mlp.leaky_slopes, [float(s) for s in slopes])

    method = data.draw(st.sampled_from([*METHODS, "rmsprop"]), label="method")
    values = data.draw(st.lists(st.floats(), min_size=4, max_size=4), label="lr, momentum, l2, l1")
    lr, momentum, l2, l1 = values
    rule, error = attempt(_core.UpdateRule, method, lr, momentum=momentum, l2=l2, l1=l1)
    if method not in METHODS:
        return check_outcome(error, {ValueError}, public=False)
    if error is not None:  # the core may refuse values the Python optimizers never pass
        return check_outcome(error, {ValueError}, public=False)
    assert_same([rule.lr, rule.l2, rule.l1], [lr, l2, l1])


OTHER_DTYPES = tuple(
    np.dtype(name)
    for name in (
        "float32", "float64", "float16", "longdouble", "int64", "int32", "bool", "complex128",
        "object",
    )
)  # fmt: skip
BREAKAGES = (
    "dtype", "byteswapped", "fortran", "strided", "reversed", "broadcast", "unaligned",
    "readonly", "shape", "list", "none",
)  # fmt: skip


@st.composite
def core_arrays(draw, values: np.ndarray, broken: bool):
    """A copy of `values` (the argument's right dtype, shape and content), or, if `broken`,
    the values broken one way (which for some shapes still leaves a valid array)."""
    if not broken:
        return values.copy()
    how = draw(st.sampled_from(BREAKAGES))
    if how == "dtype":
        other = draw(st.sampled_from([d for d in OTHER_DTYPES if d != values.dtype]))
        with np.errstate(all="ignore"):
            return values.astype(other)
    if how == "shape":
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
        return np.resize(values, shape) if values.size else np.zeros(shape, values.dtype)
    if how == "list":
        return values.tolist()
    if how == "none":
        return None
    if how == "readonly":
        return lay_out(values, "contiguous", readonly=True)
    return lay_out(values, how, step=draw(st.integers(2, 3)))


def strict_problem(obj, dtype, shape=None, *, output=False, optional=False):
    """The exception the core must raise for this argument alone: TypeError if pybind11's
    strict caster (an ndarray of exactly this dtype, C order) refuses it, ValueError if the
    binding's own checks (alignment, shape, writability) do, None if it is fine.
    shape=None: its shape is judged elsewhere."""
    if obj is None:
        return None if optional else TypeError
    if not isinstance(obj, np.ndarray) or obj.dtype != dtype or not obj.flags.c_contiguous:
        return TypeError
    if obj.ctypes.data % dtype.alignment:
        return ValueError
    if shape is not None and obj.shape != shape:
        return ValueError
    if output and not obj.flags.writeable:
        return ValueError
    return None


def rows_problem(obj, dtype, n_cols):
    """strict_problem of a batch (n >= 1, n_cols), and its n if it has no problem."""
    problem = strict_problem(obj, dtype)
    if problem is None and (obj.ndim != 2 or obj.shape[0] < 1 or obj.shape[1] != n_cols):
        problem = ValueError
    return problem, (obj.shape[0] if problem is None else None)


def expected_error(problems):
    """pybind11 refuses (TypeError) before any check of the binding's (ValueError)."""
    if TypeError in problems:
        return {TypeError}
    if ValueError in problems:
        return {ValueError}
    return set()


def broken_set(data, names):
    """The arguments to break: none in about a third of the examples, else one or two."""
    return set(data.draw(st.lists(st.sampled_from(names), max_size=2, unique=True), label="broken"))


@boundary
@given(spec=network_specs(), data=st.data())
def test_core_predict_cost_gradients_are_strict(spec, data):
    """Mlp.predict/cost/gradients take exactly C-contiguous, aligned arrays of their dtype
    (writable outputs, whatever they hold) and then agree with the network; anything else
    is refused before anything is written."""
    net = dp.Network(**spec)
    core, dtype = net._core, net.dtype
    n_in, n_out, n_params = net.sizes[0], net.sizes[-1], core.n_params
    entry = data.draw(st.sampled_from(["predict", "cost", "gradients"]), label="entry")
    names = [
        "params",
        "X",
        *{"predict": ["out"], "cost": ["Y"], "gradients": ["Y", "grads"]}[entry],
    ]
    broken = broken_set(data, [*names, "n"])
    n = data.draw(st.integers(0, 5) if "n" in broken else st.integers(1, 5), label="n")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32), label="rng"))
    garbage = data.draw(st.sampled_from([0.0, 7.5, np.nan]), label="garbage")
    values = {
        "params": net.params.copy(),
        "X": rng.uniform(-1, 1, (n, n_in)).astype(dtype),
        "Y": rng.uniform(0, 1, (n, n_out)).astype(dtype),
        "out": np.full((n, n_out), garbage, dtype),
        "grads": np.full(n_params, garbage, dtype),
    }
    arrays = {
        name: data.draw(core_arrays(values[name], name in broken), label=name) for name in names
    }
    x_problem, rows = rows_problem(arrays["X"], dtype, n_in)
    batch = None if rows is None else (rows, n_out)
    problems = [strict_problem(arrays["params"], dtype, (n_params,)), x_problem]
    if "Y" in arrays:
        problems.append(strict_problem(arrays["Y"], dtype, batch))
    if "out" in arrays:
        problems.append(strict_problem(arrays["out"], dtype, batch, output=True))
    if "grads" in arrays:
        problems.append(strict_problem(arrays["grads"], dtype, (n_params,), output=True))
    allowed = expected_error(problems)
    outputs = [name for name in names if name in ("out", "grads")]
    frozen_inputs = Frozen(*(arrays[name] for name in names if name not in outputs))
    frozen_outputs = Frozen(*(arrays[name] for name in outputs))
    result, error = attempt(getattr(core, entry), *(arrays[name] for name in names))
    frozen_inputs.assert_unchanged()
    check_outcome(error, allowed, public=False)
    if allowed:
        frozen_outputs.assert_unchanged()
        return
    X = arrays["X"]
    if entry == "predict":
        assert result is None
        assert_same(arrays["out"], net.predict(X))
    elif entry == "cost":
        assert_same(result, net.cost(X, arrays["Y"]))
    else:
        expected_cost, dW, db = net.gradients(X, arrays["Y"])
        assert_same(result, expected_cost)
        assert_same(arrays["grads"], flat_gradients(dW, db))


def _unsigned_problem(value):
    """What pybind11 makes of a Python value for a std::size_t or std::uint64_t."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return None if 0 <= value < 2**64 else TypeError
    return TypeError


_LEARNING_RATES = st.one_of(
    st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), st.sampled_from([0.0, -0.5, 1e300, math.nan])
)
TRAIN_ARGUMENTS = (
    "params", "state", "state count", "step", "step value", "X", "Y", "weights", "order",
    "order values", "n", "batch_size", "dropout", "seed", "first_batch",
)  # fmt: skip


@boundary
@given(spec=network_specs(), data=st.data())
def test_core_train_is_strict(spec, data):
    """Mlp.train takes exactly valid arrays (and scalars in range) or refuses them without
    touching anything; on valid input it matches a fresh core and the network's sgd_step,
    counts its steps exactly, and keeps the parameters and state finite (a diverging batch
    is reported and undone)."""
    net = dp.Network(**spec)
    core, dtype = net._core, net.dtype
    n_in, n_out, n_params = net.sizes[0], net.sizes[-1], core.n_params
    broken = broken_set(data, TRAIN_ARGUMENTS)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32), label="rng"))
    method = data.draw(st.sampled_from(sorted(METHODS)), label="method")
    lr = data.draw(_LEARNING_RATES, label="lr")
    l2, l1 = data.draw(st.sampled_from([(0.0, 0.0), (0.0, 0.0), (0.01, 0.0), (0.0, 0.01)]))
    decay = data.draw(st.sampled_from([0.0, 0.0, 0.01]), label="decoupled_decay")
    momentum = data.draw(st.sampled_from([0.0, 0.9]), label="momentum")
    rule, error = attempt(
        _core.UpdateRule, method, lr, momentum=momentum, l2=l2, l1=l1, decoupled_decay=decay
    )
    if not (math.isfinite(lr) and lr > 0):  # the rule itself refuses what cannot train
        return check_outcome(error, {ValueError}, public=False)
    check_outcome(error, set())

    def draw_array(name, values):
        return data.draw(core_arrays(values, name in broken), label=name)

    def draw_value(name, valid, invalid):
        return data.draw(invalid if name in broken else valid, label=name)

    n = draw_value("n", st.integers(1, 5), st.just(0))
    params = draw_array("params", net.params.copy())
    needed = METHODS[method]
    count = draw_value(
        "state count", st.just(needed), st.sampled_from([needed + 1, abs(needed - 1)])
    )
    state = [draw_array("state", rng.uniform(0, 0.1, n_params).astype(dtype)) for _ in range(count)]
    state = data.draw(st.sampled_from([list, tuple]), label="state container")(state)
    step_value = draw_value("step value", st.sampled_from([0, 3, 2**40]), st.just(-1))
    step = draw_array("step", np.array([step_value], dtype=np.int64))
    X = draw_array("X", rng.uniform(-1, 1, (n, n_in)).astype(dtype))
    Y = draw_array("Y", rng.uniform(0, 1, (n, n_out)).astype(dtype))
    weights = None
    if "weights" in broken or data.draw(st.booleans(), label="with weights"):
        weights = draw_array("weights", rng.uniform(0, 2, n).astype(dtype))
    order = None
    if {"order", "order values"} & broken or data.draw(st.booleans(), label="with order"):
        order_values = draw_value(
            "order values",
            st.lists(st.integers(0, max(n - 1, 0)), min_size=1, max_size=8),
            st.one_of(st.just([]), st.lists(st.integers(-2, n + 1), min_size=1, max_size=8)),
        )
        order = draw_array("order", np.array(order_values, dtype=np.int64))
    batch_size = draw_value(
        "batch_size",
        st.one_of(st.integers(1, 6), st.sampled_from([2**63, 2**64 - 1])),
        st.sampled_from([0, -1, 2**64, 2.0, None]),
    )
    dropout = draw_value(
        "dropout", st.sampled_from([0.0, 0.3]), st.sampled_from([1.0, -0.1, math.nan, "0.1"])
    )
    uint64 = st.integers(0, 2**64 - 1)
    seed = draw_value("seed", uint64, st.sampled_from([-1, 2**64, 1.5]))
    first_batch = draw_value("first_batch", uint64, st.sampled_from([-1, 2**64, None]))

    x_problem, rows = rows_problem(X, dtype, n_in)
    problems = [
        strict_problem(params, dtype, (n_params,), output=True),
        *(strict_problem(s, dtype, (n_params,), output=True) for s in state),
        ValueError if len(state) != needed else None,
        strict_problem(step, np.dtype(np.int64), (1,), output=True),
        x_problem,
        strict_problem(Y, dtype, None if rows is None else (rows, n_out)),
        strict_problem(weights, dtype, None if rows is None else (rows,), optional=True),
        strict_problem(order, np.dtype(np.int64), optional=True),
    ]
    # The settings are built before the call: their errors come first.
    settings_problems = [
        _unsigned_problem(batch_size),
        _unsigned_problem(seed),
        _unsigned_problem(first_batch),
    ]
    if strict_problem(step, np.dtype(np.int64)) is None and step.size and step.ravel()[0] < 0:
        problems.append(ValueError)
    if order is not None and strict_problem(order, np.dtype(np.int64)) is None:
        if order.ndim != 1 or order.size == 0 or order.min() < 0:
            problems.append(ValueError)
        elif rows is not None and order.max() >= rows:
            problems.append(ValueError)
    if batch_size == 0:
        settings_problems.append(ValueError)
    if not isinstance(dropout, (int, float)):
        settings_problems.append(TypeError)
    elif not 0 <= dropout < 1:
        settings_problems.append(ValueError)
    allowed = expected_error(settings_problems) or expected_error(problems)

    def train(mlp, *arrays):
        settings = _core.TrainSettings(
            batch_size=batch_size, rule=rule, dropout=dropout, seed=seed, first_batch=first_batch
        )
        return mlp.train(*arrays, settings)

    arguments = (params, state, step, X, Y, weights, order)
    frozen_inputs = Frozen(X, Y, weights, order)
    frozen_outputs = Frozen(params, *state, step)
    if not allowed:  # for a fresh core, which must then give the same
        twin_params, twin_step = params.copy(), step.copy()
        twin_state = type(state)(s.copy() for s in state)
    result, error = attempt(train, core, *arguments)
    frozen_inputs.assert_unchanged()
    check_outcome(error, allowed, public=False)
    if allowed:
        frozen_outputs.assert_unchanged()
        return

    expected = train(
        twin_core(net), twin_params, twin_state, twin_step, X.copy(), Y.copy(),
        None if weights is None else weights.copy(), None if order is None else order.copy(),
    )  # fmt: skip
    assert_same(result, expected)
    assert_same(params, twin_params)
    for actual, twin in zip(state, twin_state):
        assert_same(actual, twin)
    assert_same(step, twin_step)

    cost, weight, diverged, stopped = result
    event("diverged" if diverged >= 0 else "trained")
    assert stopped == -1  # only a reduction asks to stop
    n_order = rows if order is None else len(order)
    n_batches = -(-n_order // batch_size)
    assert diverged == -1 or 0 <= diverged < n_batches
    assert step[0] == step_value + (n_batches if diverged == -1 else diverged)
    assert np.isfinite(params).all() and all(np.isfinite(s).all() for s in state)
    assert math.isfinite(cost) and math.isfinite(weight) and weight >= 0

    # Plain full-batch SGD is what Network.sgd_step runs.
    plain = method == "sgd" and l1 == l2 == decay == 0 and weights is None and order is None
    if plain and dropout == 0 and batch_size >= rows and 0 < lr < math.inf:
        twin = dp.Network(**spec)
        twin_cost, twin_error = attempt(twin.sgd_step, X, Y, lr=lr)
        if diverged >= 0:
            assert isinstance(twin_error, dp.DivergenceError), twin_error
        else:
            check_outcome(twin_error, set())
            assert_same(cost / weight, twin_cost)
        assert_same(params, twin.params)


@boundary
@given(spec=network_specs(), data=st.data())
def test_core_outputs_that_alias_inputs(spec, data):
    """An output array (out, grads, params and state of train) that shares memory with
    another argument must be refused, or the call must give what it gives for separate
    copies; inputs that only overlap each other are fine."""
    net = dp.Network(**spec)
    core, dtype = net._core, net.dtype
    n_in, n_out, n_params = net.sizes[0], net.sizes[-1], core.n_params
    entry = data.draw(st.sampled_from(["predict", "gradients", "train"]), label="entry")
    # More rows than the core's chunk of 1024 rows: predict then runs several passes.
    n = data.draw(st.one_of(st.integers(1, 4), st.just(1025)), label="n")
    shapes = {"params": (n_params,), "X": (n, n_in)}
    outputs = {"predict": ["out"], "gradients": ["grads"], "train": ["params"]}[entry]
    if entry == "predict":
        shapes["out"] = (n, n_out)
    else:
        shapes["Y"] = (n, n_out)
    if entry == "gradients":
        shapes["grads"] = (n_params,)
    method = data.draw(st.sampled_from(sorted(METHODS)), label="method")
    if entry == "train":
        for k in range(METHODS[method]):
            shapes[f"state{k}"] = (n_params,)
            outputs.append(f"state{k}")
        if data.draw(st.booleans(), label="weights"):
            shapes["weights"] = (n,)
    names = list(shapes)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    # Packed one after another, then some moved onto others.
    offsets, total = {}, 0
    for name in names:
        offsets[name], total = total, total + sizes[name]
    moves = data.draw(
        st.lists(st.tuples(st.sampled_from(names), st.sampled_from(names), st.integers(-6, 6)),
                 max_size=2),
        label="moves",
    )  # fmt: skip
    for moved, onto, shift in moves:
        if moved != onto:
            offsets[moved] = min(max(offsets[onto] + shift, 0), total - sizes[moved])
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32), label="rng"))
    arena = rng.uniform(0, 1, total).astype(dtype)
    views = {
        name: arena[offsets[name] : offsets[name] + sizes[name]].reshape(shapes[name])
        for name in names
    }

    def overlaps(a, b):
        return offsets[a] < offsets[b] + sizes[b] and offsets[b] < offsets[a] + sizes[a]

    aliased = any(overlaps(a, b) for a in outputs for b in names if a != b)
    rule = _core.UpdateRule(method, 0.1, momentum=0.9)
    batch_size = data.draw(st.one_of(st.integers(1, 4), st.just(2048)), label="batch_size")

    def call(mlp, arrays, step):
        if entry == "predict":
            return mlp.predict(arrays["params"], arrays["X"], arrays["out"])
        if entry == "gradients":
            return mlp.gradients(arrays["params"], arrays["X"], arrays["Y"], arrays["grads"])
        state = [arrays[f"state{k}"] for k in range(METHODS[method])]
        settings = _core.TrainSettings(batch_size=batch_size, rule=rule)
        return mlp.train(arrays["params"], state, step, arrays["X"], arrays["Y"],
                         arrays.get("weights"), None, settings)  # fmt: skip

    copies = {name: view.copy() for name, view in views.items()}
    expected = call(twin_core(net), copies, np.zeros(1, dtype=np.int64))
    before = arena.copy()
    result, error = attempt(call, core, views, np.zeros(1, dtype=np.int64))
    if aliased and isinstance(error, ValueError):
        assert_same(arena, before)
        return
    check_outcome(error, set())
    if entry == "predict":
        assert result is None
    else:
        assert_same(np.asarray(result, dtype=np.float64), np.asarray(expected, dtype=np.float64))
    for name in outputs:
        assert_same(views[name], copies[name])


@boundary
@given(spec=network_specs(outputs=("sigmoid", "softmax")), data=st.data())
def test_huge_inputs_keep_outputs_bounded(spec, data):
    """Finite inputs of any size give sigmoid and softmax outputs in [0, 1] (softmax rows
    summing to 1), never NaN, or a clear ValueError."""
    net = dp.Network(**spec)
    n = data.draw(st.integers(1, 4), label="n")
    huge = st.sampled_from([1e200, 1e300, 1e308, 1.7976931348623157e308, 3.0e38])
    value = st.one_of(
        st.floats(-3, 3),
        huge,
        huge.map(lambda v: -v),
        st.floats(allow_nan=False, allow_infinity=False),
    )
    X = data.draw(hnp.arrays(np.float64, (n, net.sizes[0]), elements=value), label="X")
    out, error = attempt(net.predict, X)
    if error is not None:
        return check_outcome(error, {ValueError})
    assert not np.isnan(out).any(), out
    assert ((out >= 0) & (out <= 1)).all(), out
    if net.output == "softmax":
        np.testing.assert_allclose(
            out.sum(axis=1), 1, rtol=1e-5 if net.dtype == np.float32 else 1e-12
        )


@boundary
@given(
    n=st.one_of(
        st.integers(1, 8),
        st.sampled_from([0, -1, 2**31, 2**63, 2**64, np.int64(2), True, 1.0, 2.5, "2", None]),
    )
)
def test_thread_count(n):
    """set_num_threads takes any positive integer (OpenBLAS may cap it) or refuses clearly."""
    before = dp.get_num_threads()
    try:
        _, error = attempt(dp.set_num_threads, n)
        valid = isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
        check_outcome(error, set() if valid else {ValueError, TypeError})
        if valid:
            assert 1 <= dp.get_num_threads() <= n
        else:
            assert dp.get_num_threads() == before
    finally:
        _core.set_num_threads(before)
