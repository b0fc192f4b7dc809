"""Data at the boundary: checks and conversions of a user's arrays for the core.

They turn a user's arrays into the layout the core computes on (C order, aligned, the
network's dtype, finite), once per call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _sparse
from ._architecture import Architecture
from ._checks import as_real_array

# Costs that take the log of the targets' probabilities: targets must lie in [0, 1].
_PROBABILITY_COSTS = ("cross_entropy", "log_likelihood")


def to_core_layout(
    array: np.ndarray, dtype: np.dtype, argument: str, *, check_finite: bool = True
) -> np.ndarray:
    """Convert an array to the core's layout: C-contiguous, aligned, native-order ``dtype``.

    Copies only when ``array`` is not already so. A value that overflows in the cast
    (1e300 to float32) becomes infinite, and is reported as such.

    Parameters
    ----------
    array : ndarray
        Of a real dtype (see `deltaprop._checks.as_real_array`), any shape.
    dtype : numpy.dtype
        float32 or float64.
    argument : str
        Its name, for the error message.
    check_finite : bool, default=True
        Check that every value is finite.

    Returns
    -------
    ndarray
        Same shape as ``array``; ``array`` itself when it is already in the layout.

    Raises
    ------
    ValueError
        With ``check_finite``: a value is NaN or infinite (after the cast).
    """
    # An overflow in the cast (1e300 to float32) becomes inf and is reported below.
    with np.errstate(over="ignore", invalid="ignore"):
        converted = np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED"])
    if check_finite:
        require_finite(converted, argument)
    return converted


def require_finite(array: np.ndarray, argument: str) -> None:
    """Check that every value of an array is finite.

    The core checks it on its BLAS threads, without the temporary arrays of np.isfinite.

    Parameters
    ----------
    array : ndarray or SparseRows
        In the core's layout (see `to_core_layout`), any shape; of sparse rows, the entries.
    argument : str
        Its name, for the error message.

    Raises
    ------
    ValueError
        A value is NaN or infinite.
    """
    if isinstance(array, _sparse.SparseRows):
        array = array.data
    if not _core.all_finite(array.reshape(-1)):
        raise ValueError(f"{argument}: contains NaN or infinity (in {array.dtype})")


def inputs(
    X: Any, architecture: Architecture, argument: str = "X", *, check_finite: bool = True
) -> np.ndarray:
    """Check inputs and convert them to the core's layout.

    Parameters
    ----------
    X : array_like or scipy.sparse CSR/CSC matrix of shape (n_samples, n_0)
        The inputs, at least one sample, of a real dtype.
    architecture : Architecture
        The network's; gives n_0 and the dtype.
    argument : str, default="X"
        Their name, for the error message.
    check_finite : bool, default=True
        Check that every value is finite (a sparse X's entries always are).

    Returns
    -------
    ndarray or SparseRows of shape (n_samples, n_0)
        In the core's layout (see `to_core_layout`, and `deltaprop._sparse` for sparse X).

    Raises
    ------
    TypeError
        ``X`` is not of a real dtype.
    ValueError
        A wrong shape, no sample, or (with ``check_finite``) NaN or infinity.
    """
    n_in = architecture.sizes[0]
    if _sparse.is_sparse(X):
        return _sparse.inputs(X, n_in, architecture.dtype, argument)
    if _in_core_layout(X, architecture.dtype, n_in):  # what the checks below let through as is
        if check_finite:
            require_finite(X, argument)
        return X
    X = as_real_array(X, argument)
    if X.ndim != 2 or X.shape[1] != n_in:
        raise ValueError(
            f"{argument}: expected shape (n_samples, {n_in}), got {X.shape}"
            + (" (reshape a single sample to (1, n_features))" if X.ndim == 1 else "")
        )
    if X.shape[0] == 0:
        raise ValueError(f"{argument}: empty batch (0 samples)")
    return to_core_layout(X, architecture.dtype, argument, check_finite=check_finite)


def _in_core_layout(X: Any, dtype: np.dtype, n_in: int) -> bool:
    """Whether X is an ndarray of shape (n >= 1, n_in) already in the core's layout.

    Single-row predictions spend more time in checks than in arithmetic: this one test
    replaces them when there is nothing to convert.
    """
    if type(X) is not np.ndarray or X.dtype != dtype or X.ndim != 2:
        return False
    flags = X.flags
    return X.shape[1] == n_in and X.shape[0] > 0 and flags.c_contiguous and flags.aligned


def class_indices(labels: Any, n_samples: int, n_outputs: int, argument: str) -> np.ndarray:
    """Check class indices.

    Parameters
    ----------
    labels : array_like of shape (n_samples,)
        Whole numbers, of any real dtype.
    n_samples : int
        The number of samples they label.
    n_outputs : int
        The network's output units; the indices must lie in [0, n_outputs), or in [0, 2)
        with one output unit.
    argument : str
        Their name, for the error message.

    Returns
    -------
    ndarray of int64 of shape (n_samples,)
        A new array.

    Raises
    ------
    TypeError
        ``labels`` is not of a real dtype.
    ValueError
        A wrong shape, a value that is not a whole number, or one out of range.
    """
    labels = as_real_array(_refuse_text_labels(labels, argument), argument)
    if labels.shape != (n_samples,):
        raise ValueError(
            f"{argument}: expected class indices of shape ({n_samples},), got {labels.shape}"
        )
    if not np.isfinite(labels).all() or not (labels == np.round(labels)).all():
        raise ValueError(f"{argument}: class indices must be whole numbers")
    n_classes = max(n_outputs, 2)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{argument}: class indices must lie in [0, {n_classes}), "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64)


def _refuse_text_labels(labels: Any, argument: str) -> Any:
    """Return ``labels`` unless they are text, which needs encoding first: say how."""
    array = np.asarray(labels)
    is_text = array.dtype.kind in "SU" or (
        array.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in array.flat)
    )
    if is_text:
        raise TypeError(
            f"{argument}: class labels given as text (dtype {array.dtype}); a Network takes "
            "class indices 0..n_classes-1: encode them, e.g. "
            "classes, indices = np.unique(labels, return_inverse=True), or use "
            "deltaprop.sklearn.DeltapropClassifier, which takes labels of any type"
        )
    return labels


def targets(Y: Any, n_samples: int, architecture: Architecture, argument: str = "Y") -> np.ndarray:
    """Check targets and convert them to the core's layout.

    Parameters
    ----------
    Y : array_like of shape (n_samples,) or (n_samples, n_L)
        Class indices (1-D), or targets (2-D); with one output unit a 1-D Y holds the
        targets themselves.
    n_samples : int
        The number of samples.
    architecture : Architecture
        The network's; gives n_L, the dtype and the cost.
    argument : str, default="Y"
        Their name, for the error message.

    Returns
    -------
    ndarray of shape (n_samples, n_L)
        In the core's layout (see `to_core_layout`); one-hot rows for class indices.

    Raises
    ------
    TypeError
        ``Y`` is not of a real dtype.
    ValueError
        A wrong shape, class indices out of range or not whole numbers, NaN or infinity,
        or targets outside [0, 1] for a cost that takes their logarithm.
    """
    Y = as_real_array(_refuse_text_labels(Y, argument), argument)
    n_out = architecture.sizes[-1]
    if Y.ndim == 1 and n_out == 1:
        # One output unit: a 1-D Y holds the target values themselves.
        Y = Y.reshape(-1, 1)
    if Y.ndim == 1:
        labels = class_indices(Y, n_samples, n_out, argument)
        targets = np.zeros((n_samples, n_out), dtype=architecture.dtype)
        targets[np.arange(n_samples), labels] = 1
        return targets
    if Y.shape != (n_samples, n_out):
        raise ValueError(
            f"{argument}: expected class indices of shape ({n_samples},) or targets of "
            f"shape ({n_samples}, {n_out}), got {Y.shape}"
        )
    Y = to_core_layout(Y, architecture.dtype, argument)
    if architecture.cost in _PROBABILITY_COSTS and (Y.min() < 0 or Y.max() > 1):
        raise ValueError(f"{argument}: {architecture.cost} needs targets in [0, 1]")
    return Y


def sizes_from_params(weights: list[np.ndarray], biases: list[np.ndarray]) -> list[int]:
    """Infer the layer sizes from the shapes of given parameters.

    Parameters
    ----------
    weights : list of ndarray
        W^l of shape (n_l, n_{l-1}), l = 1..L.
    biases : list of ndarray
        b^l of shape (n_l,), l = 1..L.

    Returns
    -------
    list of int
        ``[n_0, n_1, ..., n_L]``.

    Raises
    ------
    ValueError
        No layer, different numbers of weight matrices and bias vectors, or shapes that do
        not chain.
    """
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(
            f"weights, biases: expected one weight matrix and one bias vector per layer, "
            f"got {len(weights)} and {len(biases)}"
        )
    sizes = [weights[0].shape[1] if weights[0].ndim == 2 else -1]
    for l, (W, b) in enumerate(zip(weights, biases)):
        if W.ndim != 2 or W.shape[1] != sizes[-1] or W.shape[0] < 1:
            raise ValueError(
                f"weights[{l}]: expected shape (n_out, {sizes[-1]}) matching the previous "
                f"layer, got {W.shape}"
            )
        if b.shape != (W.shape[0],):
            raise ValueError(f"biases[{l}]: expected shape ({W.shape[0]},), got {b.shape}")
        sizes.append(W.shape[0])
    return sizes


def classes_of(outputs: np.ndarray) -> np.ndarray:
    """Return the class of each row of outputs or targets: argmax, or >= 0.5 with one column."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] >= 0.5).astype(np.int64)
    return outputs.argmax(axis=1)
