"""Argument checks shared by every module, with one message style:
``"<argument>: expected <what>, got <value>"`` (TypeError for a wrong type, ValueError for
a wrong value)."""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_int(value: Any, argument: str, minimum: int | None = None) -> int:
    """``value`` as an int (bool refused), at least ``minimum`` when given.

    Raises
    ------
    TypeError
        ``value`` is not an integer.
    ValueError
        ``value`` is below ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{argument}: expected an integer >= {minimum}, got {value!r}")
    return operator.index(value)


def check_real(
    value: Any,
    argument: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> float:
    """``value`` as a finite float within ``[low, high)`` (ends open or closed as asked).

    Raises
    ------
    TypeError
        ``value`` is not a real number (bool refused).
    ValueError
        ``value`` is NaN, infinite or out of range.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument}: expected a real number, got {value!r}")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        raise ValueError(
            f"{argument}: expected {_interval(low, high, low_open, high_open)}, got {value!r}"
        )
    return value


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(low) and math.isinf(high):
        return "a finite number"
    if math.isinf(high):
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_fraction(value: Any, argument: str) -> float:
    """A rate or fraction in [0, 1)."""
    return check_real(value, argument, 0.0, 1.0)


def check_name(value: Any, allowed: Sequence[str], argument: str) -> str:
    """One of the names ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{argument}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def float_dtype(dtype: Any, argument: str = "dtype") -> np.dtype:
    """``dtype`` as numpy's float32 or float64 dtype."""
    try:
        resolved = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        resolved = None
    if resolved is None or resolved not in FLOAT_DTYPES:  # np.dtype(None) is float64
        raise ValueError(f"{argument}: expected 'float32' or 'float64', got {dtype!r}")
    return resolved


def check_callables(functions: Any, argument: str) -> tuple[Callable, ...]:
    """A callable or a sequence of callables, as a tuple."""
    if callable(functions):
        return (functions,)
    if isinstance(functions, (str, bytes)) or not np.iterable(functions):
        raise TypeError(
            f"{argument}: expected a callable or a sequence of callables, got {functions!r}"
        )
    functions = tuple(functions)
    for function in functions:
        if not callable(function):
            raise TypeError(f"{argument}: expected callables, got {function!r}")
    return functions


def as_real_array(data: Any, argument: str) -> np.ndarray:
    """``data`` as an ndarray of bools, integers or floats (no copy when it is one)."""
    if isinstance(data, np.ma.MaskedArray):
        raise TypeError(f"{argument}: masked arrays are not supported; fill or compress them")
    array = np.asarray(data)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{argument}: expected real numbers (bool, int or float), got dtype {array.dtype}"
        )
    return array
