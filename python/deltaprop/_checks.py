"""Argument checks shared by every module, with one message style.

Messages read ``"<argument>: expected <what>, got <value>"``; a wrong type raises
TypeError, a wrong value ValueError.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_bool(value: Any, argument: str) -> bool:
    """Return a flag that must be True or False (numpy's booleans too).

    Parameters
    ----------
    value : object
        The argument.
    argument : str
        Its name, for messages.

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        ``value`` is not a boolean.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument}: expected True or False, got {value!r}")
    return bool(value)


def check_int(value: Any, argument: str, minimum: int | None = None) -> int:
    """Check an integer argument and return it as an int.

    Parameters
    ----------
    value : object
        The argument: any integral number (numpy integers too); bool is refused.
    argument : str
        Its name, for the error message.
    minimum : int or None, default=None
        The smallest value allowed; None: no bound.

    Returns
    -------
    int
        ``value``, as a Python int.

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
    """Check a real argument and return it as a finite float within its bounds.

    Parameters
    ----------
    value : object
        The argument: any real number (numpy scalars too); bool is refused.
    argument : str
        Its name, for the error message.
    low, high : float, default=-inf, inf
        The bounds; an infinite bound is no bound.
    low_open : bool, default=False
        Exclude ``low`` itself.
    high_open : bool, default=True
        Exclude ``high`` itself.

    Returns
    -------
    float
        ``value``, as a Python float.

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
    """Check a rate or fraction: a finite float in [0, 1).

    Parameters
    ----------
    value : object
        The argument.
    argument : str
        Its name, for the error message.

    Returns
    -------
    float
        ``value``, as a Python float.

    Raises
    ------
    TypeError
        ``value`` is not a real number.
    ValueError
        ``value`` is outside [0, 1).
    """
    return check_real(value, argument, 0.0, 1.0)


def check_name(value: Any, allowed: Sequence[str], argument: str) -> str:
    """Check that an argument is one of the names ``allowed``.

    Parameters
    ----------
    value : object
        The argument.
    allowed : sequence of str
        The names accepted.
    argument : str
        Its name, for the error message.

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    ValueError
        ``value`` is not one of ``allowed`` (a non-string included).
    """
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{argument}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def float_dtype(dtype: Any, argument: str = "dtype") -> np.dtype:
    """Resolve a floating-point dtype: numpy's float32 or float64.

    Parameters
    ----------
    dtype : object
        Anything `numpy.dtype` takes (``"float32"``, ``np.float64``, ...); None is
        refused, although ``np.dtype(None)`` is float64.
    argument : str, default="dtype"
        Its name, for the error message.

    Returns
    -------
    numpy.dtype
        float32 or float64.

    Raises
    ------
    ValueError
        ``dtype`` is not a float32 or float64 dtype.
    """
    try:
        resolved = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        resolved = None
    if resolved is None or resolved not in FLOAT_DTYPES:  # np.dtype(None) is float64
        raise ValueError(f"{argument}: expected 'float32' or 'float64', got {dtype!r}")
    return resolved


def check_callables(functions: Any, argument: str) -> tuple[Callable, ...]:
    """Check a callable or an iterable of callables and return them as a tuple.

    Parameters
    ----------
    functions : callable or iterable of callable
        The argument; a single callable gives a 1-tuple.
    argument : str
        Its name, for the error message.

    Returns
    -------
    tuple of callable
        The callables, in order.

    Raises
    ------
    TypeError
        ``functions`` is neither a callable nor an iterable (a string is refused), or an
        element is not callable.
    """
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
    """Convert data to an ndarray of bools, integers or floats.

    Parameters
    ----------
    data : array_like
        The argument; an ndarray of such a dtype is returned as it is (no copy).
    argument : str
        Its name, for the error message.

    Returns
    -------
    ndarray
        Of any shape, of a bool, integer or float dtype.

    Raises
    ------
    TypeError
        ``data`` is a masked array, or its dtype is not real (complex, object, string...).
    """
    if isinstance(data, np.ma.MaskedArray):
        raise TypeError(f"{argument}: masked arrays are not supported; fill or compress them")
    array = np.asarray(data)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{argument}: expected real numbers (bool, int or float), got dtype {array.dtype}"
        )
    return array
