"""Sample data shipped with deltaprop, and small helpers to prepare it.

The only data set is the 8x8 handwritten digits of the UCI "Optical Recognition of
Handwritten Digits" test set (E. Alpaydin, C. Kaynak, 1998), in the CSV form that
scikit-learn ships; see ``deltaprop/data/README.md`` for provenance and licences.

Examples
--------
>>> from deltaprop.datasets import load_digits, one_hot, train_test_split
>>> X, y = load_digits(dtype="float32")
>>> (X_train, y_train), (X_test, y_test) = train_test_split(X, y, test_fraction=0.2)
>>> Y_train = one_hot(y_train, 10, dtype="float32")
>>> X_train.shape, Y_train.shape
((1438, 64), (1438, 10))
"""

from __future__ import annotations

import functools
import gzip
import numbers
import warnings
from importlib.resources import files
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["load_digits", "one_hot", "train_test_split"]

_DIGITS_FILE = "digits.csv.gz"
_DIGITS_SAMPLES = 1797
_DIGITS_FEATURES = 64
_DIGITS_CLASSES = 10
_DIGITS_MAX_PIXEL = 16

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _float_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` as float32 or float64, or raise ValueError naming ``dtype``."""
    # np.dtype(None) means float64, and numpy dtypes compare equal to None: reject it first.
    if dtype is not None:
        try:
            resolved = np.dtype(dtype)
        except (TypeError, ValueError):
            pass
        else:
            if any(resolved == allowed for allowed in _FLOAT_DTYPES):
                return resolved
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def _read_digits(source: Any) -> np.ndarray:
    """Parse and validate a digits CSV file (gzip-compressed).

    Parameters
    ----------
    source : importlib.resources.abc.Traversable or pathlib.Path
        Anything with an ``open("rb")`` method, pointing at the gzip file.

    Returns
    -------
    numpy.ndarray of int64, shape (1797, 65)
        Read-only; columns 0..63 are pixels in 0..16, column 64 is the label 0..9.

    Raises
    ------
    RuntimeError
        If the file is missing, not gzip, truncated, not numeric CSV, or its shape
        or values are not those of the digits data set.
    """

    def damaged(detail: str) -> RuntimeError:
        return RuntimeError(
            f"deltaprop's bundled data file {source} is missing or damaged ({detail}); "
            "reinstall deltaprop"
        )

    try:
        with source.open("rb") as raw, gzip.open(raw, "rt", encoding="ascii") as text:
            with warnings.catch_warnings():
                # An empty file only warns in np.loadtxt; the shape check below reports it.
                warnings.simplefilter("ignore")
                table = np.loadtxt(text, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, ValueError) as exc:
        raise damaged(f"{type(exc).__name__}: {exc}") from exc

    expected = (_DIGITS_SAMPLES, _DIGITS_FEATURES + 1)
    if table.shape != expected:
        raise damaged(f"expected shape {expected}, found {table.shape}")
    if not np.all(np.isfinite(table)) or not np.all(table == np.round(table)):
        raise damaged("found values that are not integers")
    pixels, labels = table[:, :_DIGITS_FEATURES], table[:, _DIGITS_FEATURES]
    if pixels.min() < 0 or pixels.max() > _DIGITS_MAX_PIXEL:
        raise damaged(f"pixel values outside 0..{_DIGITS_MAX_PIXEL}")
    if labels.min() < 0 or labels.max() > _DIGITS_CLASSES - 1:
        raise damaged(f"labels outside 0..{_DIGITS_CLASSES - 1}")

    result = table.astype(np.int64)
    result.setflags(write=False)
    return result


@functools.lru_cache(maxsize=1)
def _bundled_digits() -> np.ndarray:
    """The validated bundled digits table, read once per process (read-only)."""
    return _read_digits(files("deltaprop") / "data" / _DIGITS_FILE)


def load_digits(dtype: npt.DTypeLike = "float64") -> tuple[np.ndarray, np.ndarray]:
    """Load the 8x8 handwritten digits shipped with deltaprop.

    1797 grey-scale images of the digits 0..9 (about 180 of each), from the test
    set of the UCI "Optical Recognition of Handwritten Digits" data (E. Alpaydin,
    C. Kaynak, 1998; CC BY 4.0), as redistributed by scikit-learn. The rows are
    in the file's order, identical to ``sklearn.datasets.load_digits``.

    Parameters
    ----------
    dtype : {"float64", "float32"} or numpy.dtype, default "float64"
        Floating-point type of ``X``.

    Returns
    -------
    X : numpy.ndarray, shape (1797, 64)
        Pixel values divided by 16, so in [0, 1]; each row is one image flattened
        row by row (reshape to (8, 8) to view it). C-contiguous, of type ``dtype``.
    y : numpy.ndarray of int64, shape (1797,)
        The digit shown in each image, 0..9.

    Raises
    ------
    ValueError
        If ``dtype`` is not float32 or float64.
    RuntimeError
        If the bundled data file is missing or damaged.

    Notes
    -----
    Each call returns new, writable arrays; the file is parsed once per process.
    """
    float_dtype = _float_dtype(dtype)
    table = _bundled_digits()
    X = np.ascontiguousarray(table[:, :_DIGITS_FEATURES], dtype=float_dtype)
    X /= _DIGITS_MAX_PIXEL  # exact: division by a power of two
    y = table[:, _DIGITS_FEATURES].copy()
    return X, y


def one_hot(labels: npt.ArrayLike, n_classes: int, dtype: npt.DTypeLike = "float64") -> np.ndarray:
    """Encode integer class labels as one-hot rows.

    Parameters
    ----------
    labels : array_like of int, shape (n,)
        Class indices in ``[0, n_classes)``. Floating-point arrays are accepted
        when every value is a whole number.
    n_classes : int
        Number of classes, at least 1.
    dtype : {"float64", "float32"} or numpy.dtype, default "float64"
        Type of the result.

    Returns
    -------
    numpy.ndarray, shape (n, n_classes)
        C-contiguous; row ``i`` is all zeros except a one in column ``labels[i]``.

    Raises
    ------
    ValueError
        If ``labels`` is not one-dimensional, holds non-integer values or values
        outside ``[0, n_classes)``; if ``n_classes`` < 1; if ``dtype`` is not
        float32 or float64.
    TypeError
        If ``n_classes`` is not an integer.

    Examples
    --------
    >>> one_hot([2, 0], 3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral):
        raise TypeError(f"n_classes must be an integer, got {n_classes!r}")
    n_classes = int(n_classes)
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    float_dtype = _float_dtype(dtype)

    values = np.asarray(labels)
    if values.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {values.shape}")
    if values.dtype.kind == "f":
        if not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
            raise ValueError("labels must be integers; found non-integer values")
    elif values.dtype.kind not in "iu" and values.size > 0:
        raise ValueError(f"labels must be integers, got dtype {values.dtype}")
    if values.size and (values.min() < 0 or values.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}), found values in [{values.min()}, {values.max()}]"
        )

    indices = values.astype(np.intp)
    encoded = np.zeros((indices.shape[0], n_classes), dtype=float_dtype)
    encoded[np.arange(indices.shape[0]), indices] = 1
    return encoded


def train_test_split(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    test_fraction: float = 0.2,
    seed: Any = 0,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Shuffle samples with a seeded generator and split them into train and test.

    Parameters
    ----------
    X : array_like, shape (n, ...)
        Samples along the first axis, e.g. (n, n_features).
    y : array_like, shape (n, ...)
        Targets along the first axis, e.g. labels (n,) or one-hot (n, n_classes).
    test_fraction : float, default 0.2
        Share of the samples put in the test set, strictly between 0 and 1. The
        test set gets ``round(test_fraction * n)`` samples; both sets must be
        non-empty.
    seed : int, numpy.random.SeedSequence or numpy.random.Generator, default 0
        Passed to ``numpy.random.default_rng``; the same int seed gives the same
        split. ``None`` gives a different split on each call.

    Returns
    -------
    (X_train, y_train) : tuple of numpy.ndarray, shapes (n_train, ...) and (n_train, ...)
    (X_test, y_test) : tuple of numpy.ndarray, shapes (n_test, ...) and (n_test, ...)
        New arrays with the input dtypes; ``n_train + n_test == n``, every sample
        lands in exactly one set, and rows of ``X`` stay paired with rows of ``y``.

    Raises
    ------
    ValueError
        If ``test_fraction`` is not in (0, 1), if ``X`` or ``y`` is a scalar, if
        they differ in length, or if the split would leave a set empty.

    Examples
    --------
    >>> import numpy as np
    >>> (X_tr, y_tr), (X_te, y_te) = train_test_split(np.zeros((10, 2)), np.arange(10))
    >>> len(X_tr), len(X_te)
    (8, 2)
    """
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    X_arr = np.asarray(X)
    y_arr = np.asarray(y)
    if X_arr.ndim == 0 or y_arr.ndim == 0:
        raise ValueError("X and y must have at least one dimension (samples first)")
    n = X_arr.shape[0]
    if y_arr.shape[0] != n:
        raise ValueError(f"X and y differ in length: {n} != {y_arr.shape[0]}")
    n_test = round(float(test_fraction) * n)
    if n_test < 1 or n_test > n - 1:
        raise ValueError(
            f"test_fraction={test_fraction!r} of {n} samples gives {n_test} test and "
            f"{n - n_test} train samples; both sets must be non-empty"
        )

    order = np.random.default_rng(seed).permutation(n)
    test_idx, train_idx = order[:n_test], order[n_test:]
    return (X_arr[train_idx], y_arr[train_idx]), (X_arr[test_idx], y_arr[test_idx])
