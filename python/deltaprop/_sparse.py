"""Sparse inputs: scipy.sparse CSR and CSC matrices and arrays, checked for the core.

A sparse X (bag-of-words, TF-IDF, one-hot) is never made dense: the core computes the
first layer's products on its CSR rows in place (``cpp/sparse.hpp``). What is copied:

- a CSC X becomes CSR once per call (a sparse copy: its entries, not a dense matrix);
- unsorted column indices are sorted into a copy (the caller's matrix is not changed);
- data of another dtype than the network's is converted (a copy of the entries).

Refused, each with its own message: another sparse format (COO, LIL, ...: convert with
``.tocsr()``), a wrong shape or no row, data that is not real numbers, indices that are
not integers, a broken structure, duplicate entries of a row (``sum_duplicates()``
merges them) and NaN or infinity in the data.

scipy is not a dependency of deltaprop: a sparse X is recognised without importing it
(a scipy.sparse object exists only if scipy.sparse was imported).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from . import _core

__all__ = ["INDEX_DTYPES", "SparseRows", "inputs", "is_sparse", "steps_within_rows"]

INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


class SparseRows:
    """The rows of a sparse X in the core's layout: a checked CSR matrix.

    Rows ``r`` holds ``data[indptr[r]:indptr[r + 1]]`` in the columns
    ``indices[indptr[r]:indptr[r + 1]]``, sorted and without duplicates. Indexing by a
    slice or an array of row numbers gives the rows as a new `SparseRows` (what the
    validation split and the shards of data-parallel training take).

    Parameters
    ----------
    data : ndarray of shape (nnz,)
        The entries, of the network's dtype, C-contiguous.
    indices : ndarray of int32 or int64 of shape (nnz,)
        Their columns.
    indptr : ndarray of int32 or int64 of shape (n_rows + 1,)
        Where each row's entries start, from 0 to nnz.
    n_cols : int
        The number of columns, n_0.
    """

    _deltaprop_csr = True  # what the core recognises (see cpp/bindings.cpp)
    # What the input scaling reads of a scipy CSR matrix (`_scaling`): checked rows are
    # sorted and without duplicates.
    format = "csr"
    has_canonical_format = True

    def __init__(
        self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_cols: int
    ) -> None:
        self.data, self.indices, self.indptr = data, indices, indptr
        self.shape = (len(indptr) - 1, int(n_cols))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"SparseRows(shape={self.shape}, nnz={self.data.size}, dtype={self.dtype})"

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("X: sparse rows are never made dense; index them with rows instead")

    @property
    def dtype(self) -> np.dtype:
        """numpy.dtype: The entries' dtype."""
        return self.data.dtype

    def astype(self, dtype: Any, copy: bool = True) -> SparseRows:
        """Return the rows with their entries in ``dtype`` (a copy of the entries alone).

        Parameters
        ----------
        dtype : numpy.dtype
            The entries' new dtype.
        copy : bool, default=True
            Copy the entries even when they are of ``dtype`` already.

        Returns
        -------
        SparseRows
            Sharing ``indices`` and ``indptr`` with these rows.
        """
        data = self.data.astype(dtype, copy=copy)
        return SparseRows(data, self.indices, self.indptr, self.shape[1])

    @property
    def nbytes(self) -> int:
        """int: The bytes of the three arrays."""
        return self.data.nbytes + self.indices.nbytes + self.indptr.nbytes

    def __getitem__(self, rows: slice | np.ndarray) -> SparseRows:
        """Return some of the rows, in the order given.

        Parameters
        ----------
        rows : slice or ndarray of int of shape (n,)
            A slice of step 1 gives views of the arrays; other rows, copies.

        Returns
        -------
        SparseRows
        """
        if isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(len(self))
            stop = max(start, stop)
            begin, end = self.indptr[start], self.indptr[stop]
            indptr = self.indptr[start : stop + 1] - begin
            return SparseRows(self.data[begin:end], self.indices[begin:end], indptr, self.shape[1])
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows)
        starts = self.indptr[rows].astype(np.int64)
        lengths = self.indptr[rows + 1] - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # Entry k of the selection is entry (its row's start) + (its place in the row).
        at = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseRows(self.data[at], self.indices[at], indptr, self.shape[1])


def is_sparse(X: Any) -> bool:
    """Whether X is a scipy.sparse matrix or array, or `SparseRows`.

    Parameters
    ----------
    X : object
        Anything given as inputs.

    Returns
    -------
    bool
    """
    if isinstance(X, SparseRows):
        return True
    scipy_sparse = sys.modules.get("scipy.sparse")  # not imported: X cannot be one of its
    return scipy_sparse is not None and scipy_sparse.issparse(X)


def inputs(X: Any, n_inputs: int, dtype: np.dtype, argument: str = "X") -> SparseRows:
    """Check a sparse X and convert it to the core's CSR layout.

    Parameters
    ----------
    X : scipy.sparse CSR or CSC matrix or array of shape (n_samples, n_0), or SparseRows
        At least one sample; data of a real dtype, int32 or int64 indices.
    n_inputs : int
        n_0, the network's inputs.
    dtype : numpy.dtype
        The network's dtype (float32 or float64).
    argument : str, default="X"
        Its name, for the error message.

    Returns
    -------
    SparseRows
        Views of X's arrays where nothing needs converting (see the module's notes).

    Raises
    ------
    TypeError
        Another sparse format, data that is not real numbers, or indices that are not
        int32 or int64.
    ValueError
        A wrong shape, no sample, a broken structure, duplicate entries of a row, or NaN
        or infinity in the data.
    """
    if isinstance(X, SparseRows):
        rows = X
    else:
        rows = _csr_rows(X, argument)
    if len(rows.shape) != 2 or rows.shape[1] != n_inputs:
        raise ValueError(f"{argument}: expected shape (n_samples, {n_inputs}), got {rows.shape}")
    if rows.shape[0] == 0:
        raise ValueError(f"{argument}: empty batch (0 samples)")
    if rows.dtype != dtype or not rows.data.flags.c_contiguous:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
            data = np.ascontiguousarray(rows.data, dtype=dtype)
        rows = SparseRows(data, rows.indices, rows.indptr, rows.shape[1])
    if not _core.all_finite(rows.data):
        raise ValueError(f"{argument}: contains NaN or infinity (in {dtype})")
    return rows


def _csr_rows(X: Any, argument: str) -> SparseRows:
    """Return a scipy.sparse CSR or CSC X as `SparseRows` of its own dtype, checked."""
    fmt = X.format
    if fmt not in ("csr", "csc"):
        raise TypeError(
            f"{argument}: scipy.sparse {fmt.upper()} is not accepted; convert it with "
            f"{argument}.tocsr() (CSR and CSC are)"
        )
    if len(X.shape) != 2:
        raise ValueError(f"{argument}: expected a 2-D sparse matrix, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(
            f"{argument}: expected real numbers (bool, int or float) in the sparse data, got "
            f"dtype {X.dtype}"
        )
    for name in ("indices", "indptr"):
        if getattr(X, name).dtype not in INDEX_DTYPES:
            raise TypeError(
                f"{argument}: expected int32 or int64 {name}, got {getattr(X, name).dtype}"
            )
    if fmt == "csc":
        X = X.tocsr()  # a sparse copy of the entries, once per call
    indices, indptr = _checked_structure(X, argument)
    steps = steps_within_rows(indices, indptr)
    if (steps < 0).any():
        # A sorted copy: the caller's matrix (and scipy's flags on it) stay as they were.
        X = X.sorted_indices()
        indices, indptr = _checked_structure(X, argument)
        steps = steps_within_rows(indices, indptr)
    if (steps == 0).any():
        raise ValueError(
            f"{argument}: a row holds the same column twice (duplicate entries); merge them "
            f"with {argument}.sum_duplicates() first"
        )
    data = np.asarray(X.data)[: len(indices)]
    return SparseRows(data, indices, indptr, X.shape[1])


def _checked_structure(X: Any, argument: str) -> tuple[np.ndarray, np.ndarray]:
    """Return X's indices (as many as its rows hold) and indptr, checked for the core."""
    indptr, n_rows = np.asarray(X.indptr), X.shape[0]
    bad = len(indptr) != n_rows + 1 or indptr[0] != 0 or indptr[-1] > len(X.indices)
    if not bad:
        bad = bool((np.diff(indptr) < 0).any())
    indices = np.asarray(X.indices)[: indptr[-1]] if not bad else X.indices
    if bad or (indices.size and (indices.min() < 0 or indices.max() >= X.shape[1])):
        raise ValueError(
            f"{argument}: the sparse structure is broken (indptr or indices out of range); "
            "X.check_format() says where"
        )
    return indices, indptr


def steps_within_rows(indices: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Return the column steps between consecutive entries, 1 where a row starts.

    One array of the indices' dtype (their differences fit it: both lie in [0, n_cols)).
    """
    steps = np.diff(indices)
    # Step k goes from entry k to k + 1: across rows where entry k + 1 starts a row.
    starts = indptr[1:-1]
    steps[starts[(starts > 0) & (starts < indices.size)] - 1] = 1
    return steps
