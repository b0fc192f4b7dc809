"""Inputs standardized as the network was trained: ``fit(standardize=True)``'s scaler.

A network may carry an input scaling, ``x -> (x - mean) / scale`` per input column, learned
by `fit` from its training rows as scikit-learn's ``StandardScaler`` learns it (the weighted
mean and standard deviation with sample weights; a constant column gets the scale 1; sparse
X is scaled only, as by ``StandardScaler(with_mean=False)``). The network applies it to the
inputs of every computation (`inputs`, `validate`), saves it in its model file, pickles and
checkpoints, and exports it to ONNX. The core never sees it: each call that computes makes
one scaled copy of its X (scaling the conversion's own copy in place when the call needs to
convert X anyway).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _data
from ._checks import as_real_array
from ._sparse import is_sparse

__all__ = [
    "FitScaling",
    "Scaling",
    "array_of",
    "check",
    "inputs",
    "scaled",
    "validate",
    "without_scaling",
]

_CHUNK_BYTES = 1 << 22  # float64 rows converted at a time while the moments are summed
_EPS = np.finfo(np.float64).eps


class Scaling:
    """The input scaling ``(x - mean) / scale`` of a network's n_0 input columns.

    Parameters
    ----------
    mean : array_like of shape (n_0,)
        What is subtracted from each column (zeros: a scaling learned from sparse X).
    scale : array_like of shape (n_0,)
        What each column is then divided by, > 0.

    Raises
    ------
    ValueError
        Not two 1-D arrays of the same length, a non-finite value, or a scale <= 0.
    """

    def __init__(self, mean: Any, scale: Any) -> None:
        problem = check(mean, scale)
        if problem is not None:
            raise ValueError(f"input scaling: {problem}")
        self.mean = _frozen(mean)
        self.scale = _frozen(scale)
        self._by_dtype: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def learn(
        cls, X: Any, sample_weight: np.ndarray | None, total: Callable | None = None
    ) -> Scaling:
        """Learn the scaling of training inputs, as ``StandardScaler().fit`` does.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_0), or a scipy.sparse matrix or array
            The training inputs (a dense X is checked for NaN and infinity here).
        sample_weight : ndarray of shape (n_samples,) or None
            Weights of the rows in the mean and variance; None: all 1.
        total : callable or None, default=None
            Sums float64 arrays over the processes holding shards of the data (None: this
            process holds all of it).

        Returns
        -------
        Scaling
            The (weighted) mean and standard deviation (population, ``ddof=0``); the mean 0
            for sparse X.

        Raises
        ------
        ValueError
            NaN or infinity in X, or moments that overflow float64.
        """
        total = total if total is not None else (lambda values: values)
        moments = _sparse_moments if is_sparse(X) else _dense_moments
        weight, mean, variance = moments(X, sample_weight, total)
        if not weight > 0:  # a shard's weights may all be zero, not every rank's
            raise ValueError("sample_weight: all the weights are zero; expected a positive sum")
        if not (np.isfinite(mean).all() and np.isfinite(variance).all()):
            if not is_sparse(X):
                _data.require_finite(X, "X")
            raise ValueError("X: its column means or variances are not finite in float64")
        # scikit-learn's test of a column indistinguishable from a constant one (the error
        # bound of the two-pass variance), whose scale is then 1.
        constant = variance <= weight * _EPS * variance + (weight * mean * _EPS) ** 2
        scale = np.sqrt(variance)
        scale[constant | (scale < 10 * _EPS)] = 1.0
        return cls(np.zeros_like(mean) if is_sparse(X) else mean, scale)

    @property
    def centres(self) -> bool:
        """Whether the scaling subtracts a mean (one learned from dense X)."""
        return bool(self.mean.any())

    def same_as(self, other: Scaling | None) -> bool:
        """Return whether ``other`` is the same scaling (equal values).

        Parameters
        ----------
        other : Scaling or None
            The other scaling.

        Returns
        -------
        bool
        """
        return (
            other is not None
            and np.array_equal(self.mean, other.mean)
            and np.array_equal(self.scale, other.scale)
        )

    def apply(self, X: Any, dtype: np.dtype, *, in_place: bool, argument: str = "X") -> Any:
        """Scale inputs already in the core's layout (or sparse, of ``dtype``).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_0), or a scipy.sparse matrix or array
            The inputs, of the network's dtype.
        dtype : numpy.dtype
            The network's dtype: the arithmetic's.
        in_place : bool
            Scale ``X`` itself (a copy the caller made); else a new array.
        argument : str, default="X"
            The inputs' name, for the error message.

        Returns
        -------
        ndarray or sparse
            The scaled inputs: ``X`` itself with ``in_place``.

        Raises
        ------
        ValueError
            Sparse X for a scaling that centres: it would have to be densified.
        """
        mean, scale = self._in(np.dtype(dtype))
        if is_sparse(X):
            return self._apply_sparse(X, dtype, scale, argument)
        out = X if in_place else np.empty_like(X)
        with np.errstate(over="ignore", invalid="ignore"):  # the core reports non-finite z
            np.subtract(X, mean, out=out)
            np.divide(out, scale, out=out)
        return out

    def _apply_sparse(self, X: Any, dtype: np.dtype, scale: np.ndarray, argument: str) -> Any:
        """Divide the stored entries of a CSR or CSC matrix by their column's scale (a copy)."""
        if self.centres:
            raise ValueError(
                f"{argument}: this network centres its inputs (its scaling was learned from "
                "dense X); sparse inputs cannot be centred without densifying them: pass "
                f"{argument}.toarray(), or train on sparse X"
            )
        scaled = X.astype(dtype, copy=True)
        if scaled.format not in ("csr", "csc"):
            scaled = scaled.tocsr()
        scaled.data /= scale[_entry_columns(scaled)]
        return scaled

    def _in(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Return the mean and scale rounded to ``dtype``, as the network computes with them."""
        if dtype not in self._by_dtype:
            self._by_dtype[dtype] = (self.mean.astype(dtype), self.scale.astype(dtype))
        return self._by_dtype[dtype]

    def __reduce__(self):
        return (Scaling, (self.mean, self.scale))

    def __repr__(self) -> str:
        return f"Scaling(mean={self.mean!r}, scale={self.scale!r})"


def check(mean: Any, scale: Any, n_inputs: int | None = None) -> str | None:
    """Say what is wrong with an input scaling, or return None if it is valid.

    Parameters
    ----------
    mean, scale : array_like
        The scaling's arrays.
    n_inputs : int or None, default=None
        The network's n_0, when known.

    Returns
    -------
    str or None
        What is wrong, for a message; None: nothing.
    """
    try:
        mean, scale = as_real_array(mean, "mean"), as_real_array(scale, "scale")
    except TypeError as error:
        return str(error)
    if mean.ndim != 1 or mean.shape != scale.shape or mean.size == 0:
        return f"expected a mean and a scale of shape (n_0,), got {mean.shape} and {scale.shape}"
    if n_inputs is not None and mean.size != n_inputs:
        return f"expected {n_inputs} values (one per input), got {mean.size}"
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
        return "holds NaN or infinity"
    if not (scale > 0).all():
        return "expected every scale > 0"
    return None


def _frozen(values: Any) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    array.flags.writeable = False
    return array


def _dense_moments(X: np.ndarray, sample_weight, total) -> tuple[float, np.ndarray, np.ndarray]:
    """Total weight, weighted column means and variances (two passes, float64 sums).

    Rows are converted to float64 in chunks: no copy of X is made.
    """
    n, d = X.shape
    rows = max(1, _CHUNK_BYTES // (8 * max(d, 1)))
    w = None if sample_weight is None else sample_weight.astype(np.float64)
    chunks = [slice(start, min(start + rows, n)) for start in range(0, n, rows)]

    def weighted_sum(values: np.ndarray, part: slice) -> np.ndarray:
        return values.sum(axis=0) if w is None else w[part] @ values

    with np.errstate(over="ignore", invalid="ignore"):
        sums = sum((weighted_sum(X[c].astype(np.float64), c) for c in chunks), np.zeros(d))
        weight = float(n if w is None else w.sum())
        sums = total(np.append(sums, weight))
        weight = float(sums[-1])
        mean = sums[:-1] / weight
        squares = np.zeros(d)
        for c in chunks:
            squares += weighted_sum((X[c].astype(np.float64) - mean) ** 2, c)
        variance = total(squares) / weight
    return weight, mean, variance


def _sparse_moments(X: Any, sample_weight, total) -> tuple[float, np.ndarray, np.ndarray]:
    """Return the same moments of a sparse matrix, its implicit zeros counted, not densified."""
    X = X.tocsr() if X.format not in ("csr", "csc") else X
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    n, d = X.shape
    w = np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)
    columns, rows = _entry_columns(X), _entry_rows(X)
    data, w_entries = X.data.astype(np.float64), w[rows]
    with np.errstate(over="ignore", invalid="ignore"):
        sums = total(np.append(np.bincount(columns, w_entries * data, minlength=d), w.sum()))
        weight = float(sums[-1])
        mean = sums[:-1] / weight
        stored_weight = np.bincount(columns, w_entries, minlength=d)
        squares = np.bincount(columns, w_entries * (data - mean[columns]) ** 2, minlength=d)
        # Each implicit zero of a column adds its weight times mean^2.
        squares = total(np.append(squares, stored_weight))
        squares, stored_weight = squares[:d], squares[d:]
        variance = (squares + (weight - stored_weight) * mean**2) / weight
    return weight, mean, variance


def _entry_columns(X: Any) -> np.ndarray:
    """Return the column of each stored entry of a CSR or CSC matrix."""
    if X.format == "csr":
        return X.indices
    return np.repeat(np.arange(X.shape[1]), np.diff(X.indptr))


def _entry_rows(X: Any) -> np.ndarray:
    """Return the row of each stored entry of a CSR or CSC matrix."""
    if X.format == "csc":
        return X.indices
    return np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))


def array_of(X: Any, argument: str = "X") -> Any:
    """Return X as an ndarray (no copy for an ndarray), or X itself when it is sparse.

    What the checks then convert: a result that is not this array is their own copy, which
    the scaling may overwrite (the caller's memory never is).

    Parameters
    ----------
    X : array_like or sparse
        Inputs as given.
    argument : str, default="X"
        Their name, for the error message.

    Returns
    -------
    ndarray or sparse
    """
    return X if is_sparse(X) else as_real_array(X, argument)


def scaled(scaling: Scaling | None, dtype: Any, given: Any, X: Any, argument: str) -> Any:
    """Scale checked inputs: in place when the checks copied them, else into a new array.

    Parameters
    ----------
    scaling : Scaling or None
        The scaling (None: X is returned as it is).
    dtype : numpy.dtype
        The network's.
    given : ndarray or sparse
        The inputs as `array_of` returned them.
    X : ndarray or sparse
        The same, checked and converted (``given`` itself when nothing was converted).
    argument : str
        Their name, for the error message.

    Returns
    -------
    ndarray or sparse
    """
    if scaling is None:
        return X
    in_place = X is not given and not is_sparse(X)
    return scaling.apply(X, dtype, in_place=in_place, argument=argument)


def inputs(net: Any, X: Any, argument: str = "X", *, check_finite: bool = True) -> Any:
    """Check inputs, convert them to the core's layout and apply the network's scaling.

    Parameters
    ----------
    net : Network
        Its architecture and scaling (None: the inputs as they are).
    X : array_like of shape (n_samples, n_0)
        The inputs.
    argument : str, default="X"
        Their name, for the error message.
    check_finite : bool, default=True
        Check the inputs for NaN and infinity (else the core finds them in z^1).

    Returns
    -------
    ndarray of shape (n_samples, n_0)
        Scaled: one new array at most.
    """
    X = array_of(X, argument)
    converted = _data.inputs(X, net.architecture, argument, check_finite=check_finite)
    return scaled(net._input_scaling, net.dtype, X, converted, argument)


def validate(net: Any, X: Any, Y: Any, x_name: str = "X", y_name: str = "Y") -> tuple:
    """`Network.validate`, then the network's scaling applied to X.

    Parameters
    ----------
    net : Network
        The network.
    X, Y : array_like
        Inputs and targets.
    x_name, y_name : str
        Their names, for the error messages.

    Returns
    -------
    X, Y : ndarray
        In the core's layout, X scaled.
    """
    X = array_of(X, x_name)
    converted, Y = net.validate(X, Y, x_name, y_name)
    return scaled(net._input_scaling, net.dtype, X, converted, x_name), Y


def without_scaling(net: Any) -> Any:
    """Return a view of the network that computes on inputs already scaled.

    `fit` scales its data once; the run's own evaluations of it (the validation cost and
    accuracy, the training accuracy, L-BFGS's objective) go through this view, which shares
    the network's core, parameters and locks, so as not to scale them again. Metrics and
    callbacks get the network itself, which scales the caller's data.

    Parameters
    ----------
    net : Network
        The network being trained.

    Returns
    -------
    Network
        A shallow twin without scaling, for computing only.
    """
    twin = object.__new__(type(net))
    twin.__dict__.update(net.__dict__)
    twin._input_scaling = None
    return twin


class FitScaling:
    """The scaling of one `fit`: learned from its training data, or the network's own.

    Parameters
    ----------
    net : Network
        The network to train.
    standardize : bool
        Learn a new scaling from this fit's X (replacing the network's); else train with
        the network's scaling, if it has one.
    """

    def __init__(self, net: Any, standardize: bool) -> None:
        self.net, self.learns = net, standardize
        self.scaling = None if standardize else net._input_scaling

    def training(self, given: Any, X: Any, sample_weight, group) -> Any:
        """Learn the scaling (with ``standardize``) and scale the training inputs.

        Parameters
        ----------
        given : ndarray or sparse
            X as `array_of` returned it.
        X : ndarray or sparse
            X checked and converted.
        sample_weight : ndarray or None
            The rows' weights, checked.
        group : Group or Alone
            The processes of the run: sharded data's moments are summed over them.

        Returns
        -------
        ndarray or sparse
            X scaled (X itself without a scaling).
        """
        if self.learns:
            total = group.sum if group.sharded else None
            self.scaling = Scaling.learn(X, sample_weight, total)
        return scaled(self.scaling, self.net.dtype, given, X, "X")

    def given_validation(self, validation_data: Any) -> Any:
        """Return ``validation_data`` with its X as `array_of` makes it (to be scaled later).

        Parameters
        ----------
        validation_data : tuple (X_val, Y_val) or None
            As given to `fit` (its form is checked by `split_validation`).

        Returns
        -------
        tuple or None
        """
        if self.scaling is None or not isinstance(validation_data, (tuple, list)):
            return validation_data
        if len(validation_data) != 2:
            return validation_data
        return (array_of(validation_data[0], "validation_data[0]"), validation_data[1])

    def validation(self, validation_data: Any, validation: tuple | None) -> tuple | None:
        """Scale the validation data that `split_validation` checked.

        Parameters
        ----------
        validation_data : tuple (X_val, Y_val) or None
            What `given_validation` returned; None: the validation rows were held out of
            the training inputs, scaled already.
        validation : tuple (X_val, Y_val) or None
            Checked.

        Returns
        -------
        tuple or None
        """
        if validation_data is None or validation is None:
            return validation
        X_val = scaled(
            self.scaling, self.net.dtype, validation_data[0], validation[0], "validation_data[0]"
        )
        return X_val, validation[1]

    def keep(self) -> None:
        """Give the network the run's scaling (last: an invalid argument leaves it as it was)."""
        self.net._input_scaling = self.scaling
