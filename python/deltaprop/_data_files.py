"""Data files the command line reads: ``.npy`` arrays, sparse ``.npz`` matrices, svmlight text.

- ``.npy``: a numeric array (numpy's format, never unpickled).
- ``.npz``: a CSR or CSC matrix written by ``scipy.sparse.save_npz`` (compressed or not).
- ``.svm``, ``.svmlight``, ``.libsvm``: svmlight/libsvm text, a sample a line,
  ``LABEL INDEX:VALUE INDEX:VALUE ...``, indices from 1 in increasing order, ``#`` starting
  a comment. The first column is the label; the largest index of a training file is its
  number of features.

Every reader is bounded by the file: a ``.npy`` header's announced shape is checked against
the bytes that follow it before the array is allocated, an archive member is read in chunks
(memory grows with the bytes actually there, not with what a header claims), and text is
parsed a line at a time. Nothing is made dense: a sparse file gives a scipy.sparse matrix.
Refused, each with a message naming the file and what is wrong: a damaged or truncated
file, an ``.npz`` that is not a sparse CSR or CSC matrix, data that is not real numbers,
indices that are not int32 or int64, a broken structure, negative, out-of-range, unsorted
or repeated feature indices, NaN or infinity, and a number of features other than the
model's (``n_features``).

The svmlight reader is this module's own, not scikit-learn's ``load_svmlight_file``: it
needs no scikit-learn, says which line is wrong, and reads indices from 1 always (the
format's definition), where ``load_svmlight_file`` guesses the base from each file, so that
a training file and a predict file could be read with different bases.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from array import array
from typing import Any, BinaryIO

import numpy as np

from ._data import class_indices
from ._files import open_regular
from ._sparse import INDEX_DTYPES, steps_within_rows

__all__ = [
    "SVMLIGHT_SUFFIXES",
    "DataFileError",
    "is_data_file",
    "read_inputs",
    "read_labelled",
    "read_npy",
    "read_sparse_npz",
    "read_svmlight",
]

#: File name endings read as svmlight/libsvm text.
SVMLIGHT_SUFFIXES = (".svm", ".svmlight", ".libsvm")
_SPARSE_MEMBERS = ("format", "shape", "data", "indices", "indptr")
_MAX_HEADER = 10_000  # bytes of a .npy header; numpy writes fewer than 200 for these arrays
_READ_CHUNK = 1 << 20


class DataFileError(ValueError):
    """A data file is damaged, truncated, or not what its name says."""


def is_data_file(source: str) -> bool:
    """Whether a name is that of a sparse data file (by its ending), not of a directory.

    Parameters
    ----------
    source : str
        A path, or a data set's name.

    Returns
    -------
    bool
    """
    return source.lower().endswith((".npz", *SVMLIGHT_SUFFIXES)) and not os.path.isdir(source)


def read_labelled(path: str, labels: str | None, dtype: Any) -> tuple[Any, np.ndarray]:
    """Read a sparse data file and its class indices: svmlight's first column, or .npy labels.

    Parameters
    ----------
    path : str
        An ``.npz`` of ``save_npz`` or an svmlight file.
    labels : str or None
        The ``.npy`` file of an ``.npz``'s class indices; None for an svmlight file.
    dtype : numpy.dtype
        The entries' dtype.

    Returns
    -------
    X : scipy.sparse.csr_matrix or scipy.sparse.csc_matrix of shape (n_samples, n_features)
    y : ndarray of int64 of shape (n_samples,)

    Raises
    ------
    DataFileError
        A bad file, labels given twice or not at all, labels that are not class indices.
    """
    if path.lower().endswith(SVMLIGHT_SUFFIXES):
        if labels is not None:
            raise DataFileError(f"--labels: {path} holds its labels (its first column)")
        X, y = read_svmlight(path, dtype)
    elif labels is None:
        raise DataFileError(f"--data: {path} holds no labels: give their .npy file as --labels")
    else:
        X, y = read_sparse_npz(path, dtype), read_npy(labels)
    # Any class index: the network gets one output per class found.
    any_class = np.iinfo(np.int32).max
    return X, class_indices(y, X.shape[0], any_class, f"{labels or path}: labels")


def read_inputs(path: str, n_inputs: int, dtype: Any) -> Any:
    """Read a model's inputs: an .npy array, or a sparse data file's rows.

    Parameters
    ----------
    path : str
        ``.npz`` (``save_npz``), svmlight (its labels ignored), else ``.npy``.
    n_inputs : int
        The model's inputs: a sparse file's number of features.
    dtype : numpy.dtype
        The model's dtype, of a sparse file's entries.

    Returns
    -------
    ndarray or scipy.sparse matrix of shape (n_samples, n_inputs)
    """
    if path.lower().endswith(".npz"):
        return read_sparse_npz(path, dtype, n_features=n_inputs)
    if path.lower().endswith(SVMLIGHT_SUFFIXES):
        return read_svmlight(path, dtype, n_features=n_inputs)[0]
    return read_npy(path)


def read_npy(path: str) -> np.ndarray:
    """Read a numeric array from an ``.npy`` file, never unpickling anything.

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    ndarray
        Of the file's shape and real dtype.

    Raises
    ------
    DataFileError
        Not a numeric ``.npy`` array, or a header announcing more than the file holds.
    OSError
        The file cannot be read.
    """
    with open_regular(path) as file:  # a FIFO or device: its own ValueError
        size = os.fstat(file.fileno()).st_size
        try:
            shape, _, dtype = _npy_header(file, path, kinds="biuf")
            _check_announced(shape, dtype, size - file.tell(), path, f"the file's {size} bytes")
            file.seek(0)
            return np.lib.format.read_array(file, allow_pickle=False)
        except (ValueError, EOFError) as error:
            if isinstance(error, DataFileError):
                raise
            raise DataFileError(f"{path}: not a numeric .npy array ({error})") from error


def read_sparse_npz(path: str, dtype: Any, n_features: int | None = None) -> Any:
    """Read a CSR or CSC matrix written by ``scipy.sparse.save_npz``, checked.

    Parameters
    ----------
    path : str
        The file.
    dtype : numpy.dtype
        The entries' dtype in the matrix returned (the network's).
    n_features : int or None, default=None
        The number of columns the matrix must have (a model's inputs); None: any.

    Returns
    -------
    scipy.sparse.csr_matrix or scipy.sparse.csc_matrix of shape (n_samples, n_features)
        Of the file's format, sorted indices, no duplicate.

    Raises
    ------
    DataFileError
        See the module's notes.
    ImportError
        scipy is not installed.
    OSError
        The file cannot be read.
    """
    sparse = _scipy_sparse(path)
    with open_regular(path) as file:
        try:
            with zipfile.ZipFile(file) as archive:
                arrays = _sparse_members(archive, path)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise DataFileError(f"{path}: a damaged or truncated .npz archive ({error})") from None
    fmt, shape = _sparse_format(arrays["format"], path), _sparse_shape(arrays["shape"], path)
    data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    _check_sparse_dtypes(data, indices, indptr, path)
    n_major, n_minor = shape if fmt == "csr" else shape[::-1]
    _check_sparse_structure(data, indices, indptr, n_major, n_minor, path)
    _check_features(shape[1], n_features, path)
    entries = _finite_entries(data, dtype, path)
    build = sparse.csr_matrix if fmt == "csr" else sparse.csc_matrix
    return build((entries, indices, indptr), shape=shape)


def read_svmlight(path: str, dtype: Any, n_features: int | None = None) -> tuple[Any, np.ndarray]:
    """Read an svmlight/libsvm text file as a CSR matrix and its first column.

    Parameters
    ----------
    path : str
        The file: a sample a line, ``LABEL INDEX:VALUE ...``, indices from 1 in increasing
        order; blank lines and what follows a ``#`` are skipped.
    dtype : numpy.dtype
        The entries' dtype in the matrix returned.
    n_features : int or None, default=None
        The number of features (a model's inputs): an index above it is refused. None:
        the largest index of the file.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features)
    labels : ndarray of float64 of shape (n_samples,)

    Raises
    ------
    DataFileError
        See the module's notes.
    ImportError
        scipy is not installed.
    OSError
        The file cannot be read.
    """
    sparse = _scipy_sparse(path)
    labels, values, indices, indptr = array("d"), array("d"), array("q"), array("q", [0])
    with open_regular(path) as file:
        for number, line in enumerate(file, 1):
            row = _svmlight_line(line, n_features, f"{path}: line {number}")
            if row is not None:
                labels.append(row[0])
                indices.extend(row[1])
                values.extend(row[2])
                indptr.append(len(indices))
    if not labels:
        raise DataFileError(f"{path}: holds no sample")
    columns = np.frombuffer(indices, dtype=np.int64) - 1
    width = n_features if n_features is not None else int(columns.max(initial=-1)) + 1
    if width == 0:
        raise DataFileError(f"{path}: holds no feature (no INDEX:VALUE pair)")
    entries = _finite_entries(np.frombuffer(values, dtype=np.float64), dtype, path)
    shape = (len(labels), width)
    X = sparse.csr_matrix((entries, columns, np.frombuffer(indptr, dtype=np.int64)), shape=shape)
    return X, np.frombuffer(labels, dtype=np.float64).copy()


def _svmlight_line(
    line: bytes, n_features: int | None, where: str
) -> tuple[float, list[int], list[float]] | None:
    """Parse one line: (label, indices, values), or None for a blank or comment line."""
    try:
        tokens = line.split(b"#", 1)[0].decode("ascii").split()
    except UnicodeDecodeError:
        raise DataFileError(f"{where}: not svmlight text (a byte that is not ASCII)") from None
    if not tokens:
        return None
    label = _finite(tokens[0], where, "label")
    indices, values = [], []
    for token in tokens[1:]:
        index_text, colon, value_text = token.partition(":")
        try:
            index = int(index_text)
        except ValueError:
            index = None
        if not colon or index is None:
            raise DataFileError(f"{where}: expected INDEX:VALUE, got {token!r}")
        if index < 1:
            raise DataFileError(
                f"{where}: feature index {index}; svmlight indices start at 1 (write the "
                "file with scikit-learn's dump_svmlight_file(..., zero_based=False))"
            )
        if n_features is not None and index > n_features:
            raise DataFileError(
                f"{where}: feature index {index} is out of range for the model's "
                f"{n_features} inputs"
            )
        if indices and index <= indices[-1]:
            raise DataFileError(
                f"{where}: feature indices must increase along a line (unsorted or repeated "
                f"indices), got {index} after {indices[-1]}"
            )
        indices.append(index)
        values.append(_finite(value_text, where, f"the value of feature {index}"))
    return label, indices, values


def _finite(text: str, where: str, what: str) -> float:
    """Return the finite number a text is; else say what it should be."""
    try:
        value = float(text)
    except ValueError:
        raise DataFileError(f"{where}: {what} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise DataFileError(f"{where}: {what} is {text!r}, expected a finite number")
    return value


def _scipy_sparse(path: str) -> Any:
    try:
        import scipy.sparse
    except ImportError as error:
        raise ImportError(
            f"{path}: sparse data files need scipy: pip install 'deltaprop[scipy]'"
        ) from error
    return scipy.sparse


def _sparse_members(archive: zipfile.ZipFile, path: str) -> dict[str, np.ndarray]:
    """Read the arrays ``save_npz`` writes for CSR and CSC, each bounded by its bytes."""
    names = set(archive.namelist())
    held = ", ".join(sorted(name.removesuffix(".npy") for name in names)) or "nothing"
    if "format.npy" not in names:
        raise DataFileError(
            f"{path}: not a sparse matrix written by scipy.sparse.save_npz (it holds {held})"
        )
    arrays = {"format": _read_member(archive, "format", path)}
    _sparse_format(arrays["format"], path)  # COO, DIA...: refused by name, not by members
    missing = [name for name in _SPARSE_MEMBERS if f"{name}.npy" not in names]
    if missing:
        raise DataFileError(
            f"{path}: a broken save_npz file (it holds {held}; {', '.join(missing)} missing)"
        )
    for name in _SPARSE_MEMBERS[1:]:
        arrays[name] = _read_member(archive, name, path)
    return arrays


def _read_member(archive: zipfile.ZipFile, name: str, path: str) -> np.ndarray:
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as member:
        return _member_array(member, info.file_size, f"{path}: {name}")


def _member_array(member: BinaryIO, size: int, where: str) -> np.ndarray:
    """Read a 1-D (or 0-D) .npy array from an archive member, chunk by chunk.

    The header's announced bytes must fit in the member's size; the data are then read a
    chunk at a time, so that a member shorter than it says fails before its claim is
    allocated.
    """
    try:
        shape, _, dtype = _npy_header(member, where)
    except ValueError as error:
        if isinstance(error, DataFileError):
            raise
        raise DataFileError(f"{where}: not a numeric .npy array ({error})") from None
    if len(shape) > 1:
        raise DataFileError(f"{where}: expected a 1-D array, got shape {shape}")
    header_size = member.tell()
    _check_announced(shape, dtype, size - header_size, where, f"the member's {size} bytes")
    wanted = math.prod(shape) * dtype.itemsize
    buffer = bytearray()
    while len(buffer) < wanted:
        chunk = member.read(min(_READ_CHUNK, wanted - len(buffer)))
        if not chunk:
            raise DataFileError(f"{where}: truncated ({len(buffer)} of {wanted} bytes)")
        buffer += chunk
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def _npy_header(
    file: BinaryIO, where: str, kinds: str = "biufcSU"
) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read a .npy header; refuse a dtype not of ``kinds``.

    By default numbers, or the text of ``save_npz``'s format member: the data's dtype is
    checked with the structure.
    """
    version = np.lib.format.read_magic(file)
    read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read_header(file, max_header_size=_MAX_HEADER)
    if dtype.kind not in kinds or dtype.hasobject:
        raise DataFileError(f"{where}: expected real numbers, got dtype {dtype}")
    return shape, fortran, dtype


def _check_announced(shape: tuple, dtype: np.dtype, available: int, where: str, what: str):
    """Refuse a header announcing more bytes than follow it."""
    if math.prod(shape) * dtype.itemsize > available:
        raise DataFileError(f"{where}: its header announces {shape} {dtype}, more than {what} hold")


def _sparse_format(recorded: np.ndarray, path: str) -> str:
    """Return "csr" or "csc", the format ``save_npz`` recorded; refuse the others."""
    if recorded.shape != () or recorded.dtype.kind not in "SU":
        raise DataFileError(f"{path}: its format member is not a format name")
    fmt = recorded.item()
    fmt = fmt.decode("ascii", "replace") if isinstance(fmt, bytes) else fmt
    if fmt not in ("csr", "csc"):
        raise DataFileError(
            f"{path}: holds a scipy.sparse {fmt.upper()[:10]!r} matrix; save it as CSR or CSC "
            "(save_npz(path, X.tocsr()))"
        )
    return fmt


def _sparse_shape(shape: np.ndarray, path: str) -> tuple[int, int]:
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any():
        raise DataFileError(f"{path}: its shape member is not two sizes, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _check_sparse_dtypes(data, indices, indptr, path: str) -> None:
    if data.dtype.kind not in "biuf":
        raise DataFileError(
            f"{path}: expected real numbers (bool, int or float) in the data, got dtype "
            f"{data.dtype}"
        )
    for name, values in (("indices", indices), ("indptr", indptr)):
        if values.dtype not in INDEX_DTYPES:
            raise DataFileError(f"{path}: expected int32 or int64 {name}, got {values.dtype}")


def _check_sparse_structure(data, indices, indptr, n_major: int, n_minor: int, path: str):
    """Refuse a broken structure, indices out of range, unsorted or repeated indices.

    ``n_major`` is the number of rows (CSR) or columns (CSC) that ``indptr`` delimits,
    ``n_minor`` the range of ``indices``.
    """
    if len(indptr) != n_major + 1 or indptr[0] != 0 or (np.diff(indptr) < 0).any():
        raise DataFileError(
            f"{path}: the sparse structure is broken (indptr of {len(indptr)} entries does not "
            f"delimit {n_major} rows or columns from 0, in order)"
        )
    if not (indptr[-1] == len(indices) == len(data)):
        raise DataFileError(
            f"{path}: the sparse structure is broken (indptr ends at {indptr[-1]}, with "
            f"{len(indices)} indices and {len(data)} entries)"
        )
    if indices.size and indices.min() < 0:
        raise DataFileError(f"{path}: a negative index ({indices.min()})")
    if indices.size and indices.max() >= n_minor:
        raise DataFileError(
            f"{path}: index {indices.max()} is out of range for the matrix's {n_minor} "
            "rows or columns"
        )
    if (steps_within_rows(indices, indptr) <= 0).any():
        raise DataFileError(
            f"{path}: unsorted or repeated indices; save X.sorted_indices() after "
            "X.sum_duplicates()"
        )


def _check_features(found: int, n_features: int | None, path: str) -> None:
    if n_features is not None and found != n_features:
        raise DataFileError(f"{path}: holds {found} features, the model takes {n_features}")


def _finite_entries(data: np.ndarray, dtype: Any, path: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
        entries = data.astype(dtype)
    if not np.isfinite(entries).all():
        raise DataFileError(f"{path}: the data hold NaN or infinity (in {np.dtype(dtype)})")
    return entries
