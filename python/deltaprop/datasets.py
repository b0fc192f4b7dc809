"""Data sets for deltaprop, and small helpers to prepare them.

Two data sets are available:

- the 8x8 handwritten digits of the UCI "Optical Recognition of Handwritten Digits"
  test set (E. Alpaydin, C. Kaynak, 1998), shipped with deltaprop in the CSV form that
  scikit-learn ships; see ``deltaprop/data/README.md`` for provenance and licences;
- Fashion-MNIST (H. Xiao, K. Rasul, R. Vollgraf, 2017; MIT licence), read from IDX
  files on disk, as Debian's ``dataset-fashion-mnist`` package installs them.

Examples
--------
>>> from deltaprop.datasets import load_digits, one_hot, standardize, train_test_split
>>> X, y = load_digits(dtype="float32")
>>> (X_train, y_train), (X_test, y_test) = train_test_split(X, y, test_fraction=0.2)
>>> X_train, X_test, (mean, std) = standardize(X_train, X_test)
>>> Y_train = one_hot(y_train, 10, dtype="float32")
>>> X_train.shape, Y_train.shape
((1438, 64), (1438, 10))
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import warnings
import zlib
from importlib.resources import files
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from ._checks import FLOAT_DTYPES, check_int, check_real, float_dtype
from ._files import open_regular
from ._sparse import is_sparse

__all__ = [
    "FASHION_MNIST_DIRS",
    "FASHION_MNIST_ENV",
    "IDX_MAX_BYTES",
    "IDXFormatError",
    "load_digits",
    "load_fashion_mnist",
    "one_hot",
    "read_idx",
    "standardize",
    "train_test_split",
]

_DIGITS_FILE = "digits.csv.gz"
_DIGITS_SAMPLES = 1797
_DIGITS_FEATURES = 64
_DIGITS_CLASSES = 10
_DIGITS_MAX_PIXEL = 16


def _read_digits(source: Any) -> np.ndarray:
    """Parse and validate a digits CSV file (gzip-compressed).

    Parameters
    ----------
    source : importlib.resources.abc.Traversable or pathlib.Path
        Anything with an ``open("rb")`` method, pointing at the gzip file.

    Returns
    -------
    numpy.ndarray of int64 of shape (1797, 65)
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
    """Return the validated bundled digits table, read once per process (read-only)."""
    return _read_digits(files("deltaprop") / "data" / _DIGITS_FILE)


def load_digits(dtype: npt.DTypeLike = "float64") -> tuple[np.ndarray, np.ndarray]:
    """Load the 8x8 handwritten digits shipped with deltaprop.

    1797 grey-scale images of the digits 0..9 (about 180 of each), from the test
    set of the UCI "Optical Recognition of Handwritten Digits" data (E. Alpaydin,
    C. Kaynak, 1998; CC BY 4.0), as redistributed by scikit-learn. The rows are
    in the file's order, identical to ``sklearn.datasets.load_digits``.

    Parameters
    ----------
    dtype : {"float64", "float32"} or numpy.dtype, default="float64"
        Floating-point type of ``X``.

    Returns
    -------
    X : numpy.ndarray of shape (1797, 64)
        Pixel values divided by 16, so in [0, 1]; each row is one image flattened
        row by row (reshape to (8, 8) to view it). C-contiguous, of type ``dtype``.
    y : numpy.ndarray of int64 of shape (1797,)
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
    dtype = float_dtype(dtype)
    table = _bundled_digits()
    X = np.ascontiguousarray(table[:, :_DIGITS_FEATURES], dtype=dtype)
    X /= _DIGITS_MAX_PIXEL  # exact: division by a power of two
    y = table[:, _DIGITS_FEATURES].copy()
    return X, y


def one_hot(labels: npt.ArrayLike, n_classes: int, dtype: npt.DTypeLike = "float64") -> np.ndarray:
    """Encode integer class labels as one-hot rows.

    Parameters
    ----------
    labels : array_like of int of shape (n,)
        Class indices in ``[0, n_classes)``. Floating-point arrays are accepted
        when every value is a whole number.
    n_classes : int
        Number of classes, at least 1.
    dtype : {"float64", "float32"} or numpy.dtype, default="float64"
        Type of the result.

    Returns
    -------
    numpy.ndarray of shape (n, n_classes)
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
    n_classes = check_int(n_classes, "n_classes", 1)
    out_dtype = float_dtype(dtype)

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
    encoded = np.zeros((indices.shape[0], n_classes), dtype=out_dtype)
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
    X : array_like of shape (n, ...), or scipy.sparse CSR or CSC matrix of shape (n, n_features)
        Samples along the first axis, e.g. (n, n_features). A sparse X gives sparse
        matrices of its format.
    y : array_like of shape (n, ...)
        Targets along the first axis, e.g. labels (n,) or one-hot (n, n_classes).
    test_fraction : float, default=0.2
        Share of the samples put in the test set, strictly between 0 and 1. The
        test set gets ``round(test_fraction * n)`` samples; both sets must be
        non-empty.
    seed : int, numpy.random.SeedSequence or numpy.random.Generator or None, default=0
        Passed to ``numpy.random.default_rng``; the same int seed gives the same
        split. ``None`` gives a different split on each call.

    Returns
    -------
    (X_train, y_train) : tuple of numpy.ndarray, shapes (n_train, ...) and (n_train, ...)
        The training set.
    (X_test, y_test) : tuple of numpy.ndarray, shapes (n_test, ...) and (n_test, ...)
        New arrays with the input dtypes; ``n_train + n_test == n``, every sample
        lands in exactly one set, and rows of ``X`` stay paired with rows of ``y``.

    Raises
    ------
    TypeError
        If ``test_fraction`` is not a real number.
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
    test_fraction = check_real(test_fraction, "test_fraction", 0.0, 1.0, low_open=True)
    X_arr = X if is_sparse(X) else np.asarray(X)  # sparse rows stay sparse
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


# ------------------------------------------------------------------------------ IDX files


class IDXFormatError(ValueError):
    """An IDX file (the MNIST format) is malformed: a bad header, or data of the wrong length."""


# Type code -> element type as stored; multi-byte types are big-endian (Y. LeCun's MNIST page).
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_MAX_NDIM = 4  # MNIST-like files have 1 (labels) or 3 (images) dimensions
_GZIP_MAGIC = b"\x1f\x8b"
# Data are read this much at a time into an array of the size the header claims, once the
# claim is known to be plausible: memory grows with the data actually present.
_READ_CHUNK = 1 << 20
#: Default of `read_idx`'s ``max_bytes``: the largest data it reads unless told otherwise
#: (Fashion-MNIST's training images are 47 MB; EMNIST's largest split is 547 MB).
IDX_MAX_BYTES = 1 << 30
# Deflate codes a run of 258 bytes in 2 bits at best, so one compressed byte inflates to at
# most 1032 (zlib's "maximum compression factor of 1032:1"): a stream too short to hold what
# its header claims is known truncated before it is inflated.
_DEFLATE_MAX_RATIO = 1032


def _idx_error(name: str, detail: str) -> IDXFormatError:
    return IDXFormatError(f"{name} is not a valid IDX file: {detail}")


def _read_idx_header(stream: IO[bytes], name: str) -> tuple[np.dtype, tuple[int, ...]]:
    """Read the magic number and the dimension sizes; return (stored dtype, shape)."""
    magic = stream.read(4)
    if not magic:
        raise _idx_error(name, "the file is empty")
    if len(magic) < 4:
        raise _idx_error(name, f"the file ends inside the 4-byte magic number ({len(magic)} bytes)")
    if magic[0] or magic[1]:
        raise _idx_error(name, f"bad magic number 0x{magic.hex()}: its first two bytes must be 0")
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise _idx_error(name, f"unknown data type code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= _IDX_MAX_NDIM:
        raise _idx_error(name, f"{ndim} dimensions, expected 1 to {_IDX_MAX_NDIM}")
    sizes = stream.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise _idx_error(name, f"the file ends inside the {ndim} dimension sizes of the header")
    return _IDX_DTYPES[code], struct.unpack(f">{ndim}I", sizes)


def _check_data_length(name: str, shape: tuple[int, ...], expected: int, found: int) -> None:
    """Raise unless ``found`` (bytes after the header) equals ``expected``."""
    if found < expected:
        raise _idx_error(
            name, f"truncated: shape {shape} needs {expected} data bytes, found {found}"
        )
    if found > expected:
        extra = found - expected
        raise _idx_error(
            name, f"{extra} trailing bytes after {expected} data bytes of shape {shape}"
        )


def _check_claim(name: str, shape: tuple[int, ...], nbytes: int, room: int, max_bytes: int) -> None:
    """Refuse ``nbytes`` data bytes over ``room`` (what the file can hold) or ``max_bytes``."""
    if nbytes > room:
        raise _idx_error(
            name,
            f"truncated: shape {shape} needs {nbytes} data bytes, the file can hold at most {room}",
        )
    if nbytes > max_bytes:
        raise _idx_error(
            name,
            f"shape {shape} claims {nbytes} data bytes, over max_bytes={max_bytes}; "
            "pass a larger max_bytes to read it",
        )


def _read_exactly(stream: IO[bytes], nbytes: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Read ``nbytes`` bytes in chunks, then check that the stream ends there."""
    payload = np.empty(nbytes, np.uint8)
    view, filled = memoryview(payload), 0
    while filled < nbytes:
        count = stream.readinto(view[filled : filled + _READ_CHUNK])
        if not count:
            _check_data_length(name, shape, nbytes, filled)  # raises: too short
        filled += count
    if stream.read(1):  # a stream longer than its claim stops here, inflated no further
        raise _idx_error(name, f"trailing bytes after {nbytes} data bytes of shape {shape}")
    return payload


def _read_idx_stream(
    stream: IO[bytes], name: str, size: int, compressed: bool, max_bytes: int
) -> np.ndarray:
    """Parse an IDX stream read from a file of ``size`` bytes, gzip-``compressed`` or not."""
    dtype, shape = _read_idx_header(stream, name)
    nbytes = math.prod(shape) * dtype.itemsize  # Python int: no overflow for absurd headers
    header = 4 + 4 * len(shape)
    if compressed:
        _check_claim(name, shape, nbytes, _DEFLATE_MAX_RATIO * size - header, max_bytes)
    else:  # the exact length is known: a cheap exact check before reading anything
        _check_data_length(name, shape, nbytes, size - header)
        _check_claim(name, shape, nbytes, nbytes, max_bytes)
    payload = _read_exactly(stream, nbytes, name, shape)
    data = payload.view(dtype).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Read an IDX file, the format of MNIST and Fashion-MNIST, plain or gzip-compressed.

    An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
    dimensions ``ndim``), then ``ndim`` big-endian uint32 dimension sizes, then the
    data in C order, multi-byte types big-endian. Compression is detected from the
    gzip magic bytes (1f 8b), not from the file name.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    max_bytes : int, default=IDX_MAX_BYTES (1 GiB)
        The most data bytes (after the header) read. A header claiming more is refused
        before anything is read or inflated: a small gzip file can inflate a
        thousandfold. Raise it to read larger files.

    Returns
    -------
    numpy.ndarray of shape (d_1, ..., d_ndim)
        New, writable, C-contiguous array in native byte order, of type uint8 (type
        code 0x08), int8 (0x09), int16 (0x0B), int32 (0x0C), float32 (0x0D) or
        float64 (0x0E). ``ndim`` is 1 to 4; sizes of 0 give an empty array.

    Raises
    ------
    IDXFormatError
        If the magic number, type code or number of dimensions is invalid, if the
        file ends inside the header, if the data are shorter or longer than the
        dimension sizes imply or than ``max_bytes``, or if the gzip stream is damaged
        or truncated. The length claimed is checked against the file's size (for gzip:
        what that size can inflate to at most) and ``max_bytes`` before any array is
        allocated; data are inflated only up to the claim (one byte more tells a longer
        stream), so a corrupt header or a gzip bomb fails quickly in bounded memory.
    OSError
        If the file cannot be opened or read (e.g. FileNotFoundError).
    ValueError
        If ``path`` is a FIFO, a device or a socket (refused before reading), or
        ``max_bytes`` is negative.
    TypeError
        If ``max_bytes`` is not an integer.

    Examples
    --------
    >>> path = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    >>> images = read_idx(path)  # doctest: +SKIP
    >>> images.shape, images.dtype  # doctest: +SKIP
    ((10000, 28, 28), dtype('uint8'))
    """
    max_bytes = check_int(max_bytes, "max_bytes", minimum=0)
    name = os.fspath(path)
    with open_regular(name) as raw:
        size = os.fstat(raw.fileno()).st_size
        if raw.peek(2)[:2] != _GZIP_MAGIC:
            return _read_idx_stream(raw, name, size, False, max_bytes)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_idx_stream(stream, name, size, True, max_bytes)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise _idx_error(name, f"damaged gzip stream ({type(exc).__name__}: {exc})") from exc


# -------------------------------------------------------------------------- Fashion-MNIST

_DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
#: Directories searched for the Fashion-MNIST files when no directory is given, after the
#: one named by the environment variable ``DELTAPROP_FASHION_MNIST``. Debian's package
#: ``dataset-fashion-mnist`` installs the four ``.gz`` files directly in the first.
FASHION_MNIST_DIRS = (_DEBIAN_FASHION_MNIST_DIR,)
#: The environment variable naming a directory that holds the Fashion-MNIST files.
FASHION_MNIST_ENV = "DELTAPROP_FASHION_MNIST"
# (images, labels) file names of the training and the test split, each maybe with ".gz".
_FASHION_MNIST_SPLITS = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)
_FASHION_MNIST_SIDE = 28
_FASHION_MNIST_CLASSES = 10
_FASHION_MNIST_MAX_PIXEL = 255


def _fashion_mnist_candidates(directory: str | os.PathLike[str] | None) -> list[Path]:
    """Return the directories to search, in order."""
    if directory is not None:
        return [Path(directory)]
    from_env = os.environ.get(FASHION_MNIST_ENV)
    return ([Path(from_env)] if from_env else []) + [Path(d) for d in FASHION_MNIST_DIRS]


def _find_in(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, whichever is a file (plain first), or None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_fashion_mnist(directory: str | os.PathLike[str] | None) -> list[tuple[Path, Path]]:
    """(images, labels) paths of the train and test splits from the first complete directory."""
    candidates = _fashion_mnist_candidates(directory)
    for folder in candidates:
        splits = [(_find_in(folder, im), _find_in(folder, lb)) for im, lb in _FASHION_MNIST_SPLITS]
        if all(path is not None for split in splits for path in split):
            return splits  # type: ignore[return-value]
    looked = ", ".join(str(folder) for folder in candidates) or "no directory"
    wanted = ", ".join(stem for split in _FASHION_MNIST_SPLITS for stem in split)
    raise FileNotFoundError(
        f"Fashion-MNIST not found: looked in {looked} for {wanted} (each may end in .gz). "
        "Install it with `apt-get install dataset-fashion-mnist` (Debian; it puts the files "
        f"in {_DEBIAN_FASHION_MNIST_DIR}), or pass directory= (or set {FASHION_MNIST_ENV}) "
        "naming a directory that holds them."
    )


def _check_fashion_split(images: np.ndarray, labels: np.ndarray, paths: tuple[Path, Path]) -> None:
    """Raise ValueError unless images are uint8 (n, 28, 28) and labels uint8 (n,) in 0..9."""
    images_path, labels_path = paths
    side = _FASHION_MNIST_SIDE
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (side, side):
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (n, {side}, {side}), "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (n,), "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{labels_path} holds {labels.shape[0]} labels but {images_path} holds "
            f"{images.shape[0]} images"
        )
    if labels.size and labels.max() >= _FASHION_MNIST_CLASSES:
        raise ValueError(
            f"{labels_path}: labels must lie in 0..{_FASHION_MNIST_CLASSES - 1}, "
            f"found {labels.max()}"
        )


def _load_fashion_split(paths: tuple[Path, Path], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Read, validate and convert one split: X (n, 784) of ``dtype`` in [0, 1], y int64 (n,)."""
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    _check_fashion_split(images, labels, paths)
    X = images.reshape(images.shape[0], -1).astype(dtype)  # a new C-contiguous array
    X /= _FASHION_MNIST_MAX_PIXEL
    return X, labels.astype(np.int64)


def load_fashion_mnist(
    directory: str | os.PathLike[str] | None = None,
    dtype: npt.DTypeLike = "float32",
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load Fashion-MNIST: 28x28 grey-scale images of clothing in 10 classes.

    70000 images from Zalando's article pictures (H. Xiao, K. Rasul, R. Vollgraf,
    "Fashion-MNIST", arXiv:1708.07747, 2017; MIT licence), 60000 for training and
    10000 for testing, 6000 and 1000 per class; the classes are 0 T-shirt/top,
    1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
    9 Ankle boot. deltaprop does not ship the data: on Debian, ``apt-get install
    dataset-fashion-mnist`` puts the four files in /usr/share/datasets/fashion-mnist.

    Parameters
    ----------
    directory : str or os.PathLike, optional
        Directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or
        gzip-compressed (named with or without ``.gz``). By default the directory
        named by the environment variable ``DELTAPROP_FASHION_MNIST`` is tried, then
        those in ``FASHION_MNIST_DIRS``; the first holding all four files is used.
    dtype : {"float32", "float64"} or numpy.dtype, default="float32"
        Floating-point type of ``X_train`` and ``X_test``.

    Returns
    -------
    (X_train, y_train) : tuple of ndarray of shapes (60000, 784) and (60000,)
        The training images and their labels.
    (X_test, y_test) : tuple of ndarray of shapes (10000, 784) and (10000,)
        The test images and their labels. Pixel values are divided by 255, so in
        [0, 1], each image flattened row by row (reshape a row to (28, 28) to view it),
        C-contiguous, of type ``dtype``; the labels are 0..9, as int64. Rows are in the
        files' order. The sizes are those of the real data; other files are read with
        their own sizes.

    Raises
    ------
    ValueError
        If ``dtype`` is not float32 or float64; if the images are not uint8 of shape
        (n, 28, 28), the labels not uint8 of shape (n,) with the same n, or a label
        is 10 or more. IDXFormatError (a ValueError) if a file is malformed.
    FileNotFoundError
        If no searched directory holds all four files; the message lists where it
        looked and how to get the data.
    """
    dtype = float_dtype(dtype)
    train_paths, test_paths = _find_fashion_mnist(directory)
    train = _load_fashion_split(train_paths, dtype)
    return train, _load_fashion_split(test_paths, dtype)


# ---------------------------------------------------------------------------- standardize


def _feature_matrix(X: npt.ArrayLike, name: str) -> np.ndarray:
    """``X`` as a 2-D float array: float32/float64 kept, other real types as float64."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.dtype in FLOAT_DTYPES:
        return arr
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _feature_stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and population std in float64; constant columns get std 1."""
    constant = np.ptp(train, axis=0) == 0
    # A constant column's computed mean can be off by an ulp; its own value is exact, so
    # the column maps to exactly 0.
    mean = np.where(constant, train[0], train.mean(axis=0, dtype=np.float64))
    std = np.where(constant, 1.0, train.std(axis=0, dtype=np.float64))
    std[std == 0] = 1.0  # deviations so small that their squares underflow
    return mean, std


def standardize(X_train: npt.ArrayLike, *others: npt.ArrayLike) -> tuple[Any, ...]:
    """Scale every feature to zero mean and unit variance, with statistics of ``X_train``.

    Each array ``A`` becomes ``(A - mean) / std``, where ``mean`` and ``std`` (the
    population standard deviation, ``ddof=0``) are taken per column of ``X_train``
    only, so test data are transformed exactly like the training data. A column
    that is constant in ``X_train`` gets ``std = 1`` (so it stays finite, and is 0
    in ``X_train``).

    Parameters
    ----------
    X_train : array_like of shape (n_samples, n_features)
        Data the statistics are fitted on; at least one sample, all values finite.
    *others : array_like of shape (m, n_features)
        Further arrays (test, validation) to transform with the same statistics.

    Returns
    -------
    X_train_std : numpy.ndarray of shape (n_samples, n_features)
        ``X_train``, standardized.
    *others_std : numpy.ndarray of shape (m, n_features)
        One per array in ``others``, in order. Every result is a new array of its
        input's type if that is float32 or float64, else float64.
    (mean, std) : tuple of numpy.ndarray of shape (n_features,)
        The statistics used, of ``X_train_std``'s type; apply them to new data as
        ``(X_new - mean) / std``.

    Raises
    ------
    ValueError
        If an array is not 2-D or not real-valued, if ``X_train`` has no samples or
        a NaN or infinity, or if an array's number of features differs from
        ``X_train``'s.

    Examples
    --------
    >>> import numpy as np
    >>> X_tr, X_te, (mean, std) = standardize([[0.0, 5.0], [2.0, 5.0]], [[4.0, 6.0]])
    >>> X_tr
    array([[-1.,  0.],
           [ 1.,  0.]])
    >>> X_te, mean, std
    (array([[3., 1.]]), array([1., 5.]), array([1., 1.]))
    """
    train = _feature_matrix(X_train, "X_train")
    if train.shape[0] == 0:
        raise ValueError(f"X_train must hold at least one sample, got shape {train.shape}")
    if not np.all(np.isfinite(train)):
        raise ValueError("X_train must be finite; found NaN or infinity")
    arrays = [train] + [_feature_matrix(X, f"others[{i}]") for i, X in enumerate(others)]
    for i, arr in enumerate(arrays[1:]):
        if arr.shape[1] != train.shape[1]:
            raise ValueError(
                f"others[{i}] has {arr.shape[1]} features but X_train has {train.shape[1]}"
            )
    mean, std = _feature_stats(train)
    scaled = [(arr - mean.astype(arr.dtype)) / std.astype(arr.dtype) for arr in arrays]
    return (*scaled, (mean.astype(train.dtype), std.astype(train.dtype)))
