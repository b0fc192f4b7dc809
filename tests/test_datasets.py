"""Tests for deltaprop.datasets: the bundled digits, IDX files, Fashion-MNIST and the helpers."""

import gzip
import hashlib
import os
import struct
import subprocess
import sys
import tracemalloc
from importlib.resources import files

import numpy as np
import pytest

from conftest import under_address_space_limit
from deltaprop import datasets

# First row of digits.csv.gz, copied from the file: 64 pixels, then the label 0.
FIRST_ROW_PIXELS = [
    0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0,
    0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
    0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0,
    0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0,
]  # fmt: skip
CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


# --------------------------------------------------------------------------- load_digits


def test_bundled_file_is_the_scikit_learn_one():
    data = (files("deltaprop") / "data" / "digits.csv.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == DIGITS_SHA256


def test_provenance_files_are_shipped():
    data_dir = files("deltaprop") / "data"
    readme = (data_dir / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "10.24432/C50P49" in readme
    licence = (data_dir / "LICENSE-digits.txt").read_text(encoding="utf-8")
    assert "BSD 3-Clause" in licence and "scikit-learn developers" in licence


def test_load_digits_shapes_and_default_dtype():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64)
    assert y.shape == (1797,)
    assert X.dtype == np.float64
    assert y.dtype == np.int64
    assert X.flags.c_contiguous and X.flags.writeable and y.flags.writeable


@pytest.mark.parametrize(
    "dtype, expected",
    [
        ("float32", np.float32),
        ("float64", np.float64),
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.dtype("float32"), np.float32),
        (np.dtype("float64"), np.float64),
    ],
)
def test_load_digits_dtype(dtype, expected):
    X, y = datasets.load_digits(dtype=dtype)
    assert X.dtype == expected
    assert X.flags.c_contiguous
    assert y.dtype == np.int64


@pytest.mark.parametrize("dtype", ["int32", "float16", np.int64, None, "nonsense", object])
def test_load_digits_rejects_other_dtypes(dtype):
    with pytest.raises(ValueError, match="dtype"):
        datasets.load_digits(dtype=dtype)


def test_load_digits_value_ranges():
    X, y = datasets.load_digits()
    assert X.min() == 0.0 and X.max() == 1.0
    # every pixel is a multiple of 1/16 (the raw data are integer counts 0..16)
    np.testing.assert_array_equal(X * 16, np.round(X * 16))
    assert y.min() == 0 and y.max() == 9


def test_load_digits_each_class_present_with_known_counts():
    _, y = datasets.load_digits()
    np.testing.assert_array_equal(np.bincount(y, minlength=10), CLASS_COUNTS)


def test_load_digits_first_sample_matches_csv():
    X, y = datasets.load_digits()
    assert y[0] == 0
    np.testing.assert_array_equal(X[0] * 16, FIRST_ROW_PIXELS)
    # the rows cycle 0, 1, ..., 9 at the start of the file
    np.testing.assert_array_equal(y[:10], np.arange(10))


def test_load_digits_matches_raw_csv():
    with (files("deltaprop") / "data" / "digits.csv.gz").open("rb") as raw:
        with gzip.open(raw, "rt") as text:
            table = np.loadtxt(text, delimiter=",")
    X, y = datasets.load_digits()
    np.testing.assert_array_equal(X, table[:, :64] / 16)
    np.testing.assert_array_equal(y, table[:, 64])


def test_load_digits_float32_equals_float64():
    X32, y32 = datasets.load_digits("float32")
    X64, y64 = datasets.load_digits("float64")
    np.testing.assert_array_equal(X32.astype(np.float64), X64)  # k/16 is exact in both
    np.testing.assert_array_equal(y32, y64)


def test_load_digits_returns_fresh_arrays():
    X1, y1 = datasets.load_digits()
    X1[:] = -1
    y1[:] = -1
    X2, y2 = datasets.load_digits()
    assert X2.min() == 0.0 and y2.min() == 0


# ------------------------------------------------------------------- damaged data files


def _gz(tmp_path, text):
    path = tmp_path / "digits.csv.gz"
    with gzip.open(path, "wt", encoding="ascii") as fh:
        fh.write(text)
    return path


def _valid_rows():
    rows = [[(i + j) % 17 for j in range(64)] + [i % 10] for i in range(1797)]
    return rows


def _csv(rows):
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows)


def test_read_digits_accepts_valid_synthetic_file(tmp_path):
    table = datasets._read_digits(_gz(tmp_path, _csv(_valid_rows())))
    assert table.shape == (1797, 65) and table.dtype == np.int64
    assert not table.flags.writeable


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda rows: rows[:-1], "shape"),
        (lambda rows: [r[:-1] for r in rows], "shape"),
        (lambda rows: [[17] + r[1:] if i == 5 else r for i, r in enumerate(rows)], "pixel"),
        (lambda rows: [r[:-1] + [10] if i == 7 else r for i, r in enumerate(rows)], "label"),
        (lambda rows: [r[:-1] + [-1] if i == 7 else r for i, r in enumerate(rows)], "label"),
        (lambda rows: [[0.5] + r[1:] if i == 0 else r for i, r in enumerate(rows)], "integer"),
        (lambda rows: [["nan"] + r[1:] if i == 0 else r for i, r in enumerate(rows)], "integer"),
        (lambda rows: [["x"] + r[1:] if i == 0 else r for i, r in enumerate(rows)], "ValueError"),
        (lambda rows: [], "shape"),
    ],
)
def test_read_digits_rejects_damaged_content(tmp_path, mutate, message):
    path = _gz(tmp_path, _csv(mutate(_valid_rows())))
    with pytest.raises(RuntimeError, match=f"damaged.*{message}"):
        datasets._read_digits(path)


def test_read_digits_rejects_non_gzip_file(tmp_path):
    path = tmp_path / "digits.csv.gz"
    path.write_text(_csv(_valid_rows()))
    with pytest.raises(RuntimeError, match="damaged"):
        datasets._read_digits(path)


def test_read_digits_rejects_truncated_gzip(tmp_path):
    path = _gz(tmp_path, _csv(_valid_rows()))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RuntimeError, match="damaged"):
        datasets._read_digits(path)


def test_read_digits_rejects_missing_file(tmp_path):
    with pytest.raises(RuntimeError, match="missing"):
        datasets._read_digits(tmp_path / "absent.csv.gz")


# ---------------------------------------------------------------------------- one_hot


def test_one_hot_values():
    encoded = datasets.one_hot([2, 0, 1, 2], 3)
    expected = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    np.testing.assert_array_equal(encoded, expected)
    assert encoded.dtype == np.float64 and encoded.flags.c_contiguous


def test_one_hot_roundtrips_digits_labels():
    _, y = datasets.load_digits()
    encoded = datasets.one_hot(y, 10, dtype="float32")
    assert encoded.shape == (1797, 10) and encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded.sum(axis=1), 1)
    np.testing.assert_array_equal(encoded.argmax(axis=1), y)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0, 3, 1], dtype=np.uint8),
        np.array([0, 3, 1], dtype=np.int32),
        np.array([0.0, 3.0, 1.0]),
        [0, 3, 1],
    ],
)
def test_one_hot_accepts_integer_like_labels(labels):
    encoded = datasets.one_hot(labels, 4)
    np.testing.assert_array_equal(encoded.argmax(axis=1), [0, 3, 1])


def test_one_hot_single_class_and_empty():
    np.testing.assert_array_equal(datasets.one_hot([0, 0], 1), [[1.0], [1.0]])
    empty = datasets.one_hot(np.array([], dtype=np.int64), 5)
    assert empty.shape == (0, 5)


@pytest.mark.parametrize(
    "labels",
    [
        [[0, 1], [1, 0]],  # 2-D
        5,  # 0-D
        [0.5, 1.0],  # non-integer
        [0.0, np.nan],  # non-integer
        ["0", "1"],  # strings
        [True, False],  # booleans
        [0, 3],  # >= n_classes
        [-1, 0],  # negative
    ],
)
def test_one_hot_rejects_bad_labels(labels):
    with pytest.raises(ValueError, match="labels"):
        datasets.one_hot(labels, 3)


@pytest.mark.parametrize("n_classes", [0, -2])
def test_one_hot_rejects_too_few_classes(n_classes):
    with pytest.raises(ValueError, match="n_classes"):
        datasets.one_hot([0], n_classes)


@pytest.mark.parametrize("n_classes", [2.0, "3", None, True])
def test_one_hot_rejects_non_integer_n_classes(n_classes):
    with pytest.raises(TypeError, match="n_classes"):
        datasets.one_hot([0], n_classes)


def test_one_hot_rejects_bad_dtype():
    with pytest.raises(ValueError, match="dtype"):
        datasets.one_hot([0], 2, dtype="int8")


# ------------------------------------------------------------------- train_test_split


def test_split_sizes_and_pairing():
    X, y = datasets.load_digits()
    (X_tr, y_tr), (X_te, y_te) = datasets.train_test_split(X, y, test_fraction=0.2, seed=0)
    assert X_te.shape == (359, 64) and y_te.shape == (359,)  # round(0.2 * 1797)
    assert X_tr.shape == (1438, 64) and y_tr.shape == (1438,)
    assert X_tr.dtype == X.dtype and y_tr.dtype == y.dtype
    # every (image, label) pair is an original pair: match by row content
    original = {(row.tobytes(), label) for row, label in zip(X, y)}
    for part_X, part_y in ((X_tr, y_tr), (X_te, y_te)):
        assert {(row.tobytes(), label) for row, label in zip(part_X, part_y)} <= original


def test_split_is_a_disjoint_cover():
    n = 103
    X = np.arange(n * 2).reshape(n, 2)
    y = np.arange(n)
    (X_tr, y_tr), (X_te, y_te) = datasets.train_test_split(X, y, test_fraction=0.3, seed=7)
    assert len(y_te) == round(0.3 * n) and len(y_tr) + len(y_te) == n
    assert set(y_tr).isdisjoint(y_te)
    np.testing.assert_array_equal(np.sort(np.concatenate([y_tr, y_te])), y)
    np.testing.assert_array_equal(X_tr[:, 0], 2 * y_tr)  # rows stay paired
    np.testing.assert_array_equal(X_te[:, 0], 2 * y_te)
    assert not np.array_equal(y_tr, np.sort(y_tr))  # actually shuffled


def test_split_is_reproducible_and_seed_dependent():
    X = np.arange(200.0).reshape(100, 2)
    y = np.arange(100)
    first = datasets.train_test_split(X, y, seed=3)
    again = datasets.train_test_split(X, y, seed=3)
    other = datasets.train_test_split(X, y, seed=4)
    np.testing.assert_array_equal(first[1][1], again[1][1])
    np.testing.assert_array_equal(first[0][0], again[0][0])
    assert not np.array_equal(first[1][1], other[1][1])
    generator_split = datasets.train_test_split(X, y, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(generator_split[1][1], first[1][1])


def test_split_accepts_one_hot_targets_and_does_not_alias():
    X, y = datasets.load_digits()
    Y = datasets.one_hot(y, 10)
    (X_tr, Y_tr), _ = datasets.train_test_split(X, Y)
    assert Y_tr.shape == (1438, 10)
    X_tr[:] = -1
    assert X.min() == 0.0


@pytest.mark.parametrize(
    ("fraction", "error"),
    [(f, ValueError) for f in (0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"))]
    + [(f, TypeError) for f in ("0.2", None, True)],
)
def test_split_rejects_bad_fraction(fraction, error):
    with pytest.raises(error, match="test_fraction"):
        datasets.train_test_split(np.zeros((10, 2)), np.zeros(10), test_fraction=fraction)


def test_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="length"):
        datasets.train_test_split(np.zeros((10, 2)), np.zeros(9))


def test_split_rejects_scalars():
    with pytest.raises(ValueError, match="dimension"):
        datasets.train_test_split(np.float64(1.0), np.zeros(1))


@pytest.mark.parametrize("n, fraction", [(3, 0.1), (3, 0.9), (1, 0.5)])
def test_split_rejects_empty_sides(n, fraction):
    with pytest.raises(ValueError, match="non-empty"):
        datasets.train_test_split(np.zeros((n, 2)), np.zeros(n), test_fraction=fraction)


# ------------------------------------------------------------------------------ read_idx

# The IDX type codes, written down independently of the module under test.
IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array, code=None, shape=None):
    """The bytes of an IDX file holding ``array`` (header fields overridable to corrupt it)."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype] if code is None else code
    shape = array.shape if shape is None else shape
    header = bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data, compress):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def sample_array(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


@pytest.fixture(params=[False, True], ids=["plain", "gzip"])
def compress(request):
    return request.param


@pytest.mark.parametrize("dtype", list(IDX_CODES), ids=[d.name for d in IDX_CODES])
def test_read_idx_roundtrip_every_type(tmp_path, dtype, compress):
    array = sample_array(dtype, (3, 4, 5))
    result = datasets.read_idx(write(tmp_path / "a.idx", idx_bytes(array), compress))
    assert result.dtype == dtype and result.dtype.isnative
    assert result.flags.c_contiguous and result.flags.writeable
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize("shape", [(7,), (2, 3), (4, 2, 3), (1, 2, 3, 2), (0,), (0, 28, 28)])
def test_read_idx_roundtrip_shapes(tmp_path, shape, compress):
    array = sample_array(np.dtype(np.uint8), shape)
    result = datasets.read_idx(write(tmp_path / "a.idx", idx_bytes(array), compress))
    assert result.shape == shape
    np.testing.assert_array_equal(result, array)


def test_read_idx_hand_written_bytes(tmp_path):
    # int16 [1, -2, 258] and float32 [1.0, -2.5], big-endian, worked out by hand.
    int16 = b"\x00\x00\x0b\x01" + b"\x00\x00\x00\x03" + b"\x00\x01\xff\xfe\x01\x02"
    float32 = b"\x00\x00\x0d\x01" + b"\x00\x00\x00\x02" + b"\x3f\x80\x00\x00\xc0\x20\x00\x00"
    np.testing.assert_array_equal(
        datasets.read_idx(write(tmp_path / "i", int16, False)), [1, -2, 258]
    )
    np.testing.assert_array_equal(
        datasets.read_idx(write(tmp_path / "f", float32, False)), [1, -2.5]
    )


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    compressed_no_suffix = write(tmp_path / "data-idx2-int", idx_bytes(array), True)
    plain_with_suffix = write(tmp_path / "data-idx2-int.gz", idx_bytes(array), False)
    np.testing.assert_array_equal(datasets.read_idx(compressed_no_suffix), array)
    np.testing.assert_array_equal(datasets.read_idx(str(plain_with_suffix)), array)


def test_idx_format_error_is_a_public_value_error():
    assert issubclass(datasets.IDXFormatError, ValueError)
    assert {"IDXFormatError", "read_idx", "load_fashion_mnist", "standardize"} <= set(
        datasets.__all__
    )


VALID = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"\x00\x00\x08", "magic number"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00", "dimension sizes"),
        (b"\x01" + VALID[1:], "magic number"),
        (b"\x00\x08" + VALID[2:], "magic number"),
        (b"\x00\x00\x0a" + VALID[3:], "type code 0x0A"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (idx_bytes(np.zeros((1, 1, 1, 1, 1), np.uint8)), "5 dimensions"),
        (VALID[:-1], "truncated"),
        (VALID[:16], "truncated"),  # the header alone
        (VALID + b"\x00", "trailing"),
        (VALID + VALID, "trailing"),
        (idx_bytes(np.zeros(0), shape=(65535, 65535, 65535)), "truncated"),
    ],
    ids=[
        "empty",
        "short-magic",
        "short-dims",
        "magic-byte-0",
        "magic-byte-1",
        "unknown-type",
        "ndim-0",
        "ndim-5",
        "truncated-by-1",
        "header-only",
        "trailing-byte",
        "file-twice",
        "claims-2-PB",
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, data, message, compress):
    path = write(tmp_path / "bad-idx", data, compress)
    with pytest.raises(datasets.IDXFormatError, match=message) as excinfo:
        datasets.read_idx(path)
    assert str(path) in str(excinfo.value)


def test_read_idx_huge_claim_allocates_nothing(tmp_path, compress):
    # 1 GiB of float64 claimed, none present: np.empty would succeed lazily, so measure.
    path = write(tmp_path / "huge", idx_bytes(np.zeros(3), shape=(1024, 1024, 128)), compress)
    tracemalloc.start()
    try:
        with pytest.raises(datasets.IDXFormatError, match="truncated"):
            datasets.read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 23  # a few read buffers, not the 1 GiB claimed


@pytest.mark.parametrize("cut", [1, 8, 12, len(gzip.compress(VALID)) // 2])
def test_read_idx_rejects_truncated_gzip_stream(tmp_path, cut):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(VALID)[:-cut])
    with pytest.raises(datasets.IDXFormatError, match="gzip") as excinfo:
        datasets.read_idx(path)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize(
    "data",
    [b"\x1f\x8b", b"\x1f\x8b" + bytes(30), gzip.compress(VALID)[:-8] + b"\x00" * 8],
    ids=["magic-only", "bad-header", "bad-crc"],
)
def test_read_idx_rejects_damaged_gzip(tmp_path, data):
    path = tmp_path / "damaged.gz"
    path.write_bytes(data)
    with pytest.raises(datasets.IDXFormatError, match="gzip"):
        datasets.read_idx(path)


def test_read_idx_missing_file_is_not_a_format_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        datasets.read_idx(tmp_path / "absent")


# ------------------------------------------------------------------ load_fashion_mnist


def write_fashion(folder, n_train=5, n_test=3, seed=0, **override):
    """Synthetic Fashion-MNIST files in ``folder``; gzip and plain mixed, like real copies.

    ``override`` maps a file stem (with - replaced by _) to the bytes to write instead.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for stem, n, compress in (("train", n_train, True), ("t10k", n_test, False)):
        images = rng.integers(0, 255, size=(n, 28, 28), endpoint=True).astype(np.uint8)
        images[0, 0, :2] = [0, 255]  # both ends of the pixel range
        labels = rng.integers(0, 9, size=n, endpoint=True).astype(np.uint8)
        arrays[stem] = (images, labels)
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            name = f"{stem}-{kind}"
            data = override.get(name.replace("-", "_"), idx_bytes(array))
            # images compressed in one split, labels in the other
            gz = compress == (kind.startswith("images"))
            write(folder / (name + ".gz" if gz else name), data, gz)
    return arrays


def test_load_fashion_mnist_synthetic(tmp_path):
    arrays = write_fashion(tmp_path)
    (X_train, y_train), (X_test, y_test) = datasets.load_fashion_mnist(directory=tmp_path)
    for X, y, (images, labels) in (
        (X_train, y_train, arrays["train"]),
        (X_test, y_test, arrays["t10k"]),
    ):
        assert X.shape == (len(labels), 784) and y.shape == (len(labels),)
        assert X.dtype == np.float32 and y.dtype == np.int64
        assert X.flags.c_contiguous and X.flags.writeable
        expected = images.reshape(len(labels), 784).astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(X, expected)
        np.testing.assert_array_equal(y, labels)
        assert X.min() == 0.0 and X.max() == 1.0
    assert len(y_train) == 5 and len(y_test) == 3


def test_load_fashion_mnist_float64(tmp_path):
    arrays = write_fashion(tmp_path)
    (X_train, _), _ = datasets.load_fashion_mnist(str(tmp_path), dtype="float64")
    assert X_train.dtype == np.float64
    np.testing.assert_array_equal(X_train * 255, arrays["train"][0].reshape(5, 784))


@pytest.mark.parametrize("dtype", ["int32", "float16", None])
def test_load_fashion_mnist_rejects_bad_dtype(tmp_path, dtype):
    write_fashion(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        datasets.load_fashion_mnist(tmp_path, dtype=dtype)


@pytest.mark.parametrize(
    "remove", [None, "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"], ids=str
)
def test_load_fashion_mnist_missing_files(tmp_path, remove):
    if remove is not None:
        write_fashion(tmp_path)
        (tmp_path / remove).unlink()
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as excinfo:
        datasets.load_fashion_mnist(directory=tmp_path)
    assert str(tmp_path) in str(excinfo.value) and "directory=" in str(excinfo.value)


def test_load_fashion_mnist_search_order(tmp_path, monkeypatch):
    write_fashion(tmp_path / "env", n_train=4)
    write_fashion(tmp_path / "default", n_train=2)
    absent = tmp_path / "absent"
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", (str(absent), str(tmp_path / "default")))
    monkeypatch.setenv("DELTAPROP_FASHION_MNIST", str(tmp_path / "env"))
    assert len(datasets.load_fashion_mnist()[0][1]) == 4  # the environment comes first
    monkeypatch.delenv("DELTAPROP_FASHION_MNIST")
    assert len(datasets.load_fashion_mnist()[0][1]) == 2  # first complete directory
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", (str(absent),))
    with pytest.raises(FileNotFoundError, match="apt-get install") as excinfo:
        datasets.load_fashion_mnist()
    assert str(absent) in str(excinfo.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"train_labels_idx1_ubyte": idx_bytes(np.zeros(4, np.uint8))}, "4 labels.*5 images"),
        ({"t10k_labels_idx1_ubyte": idx_bytes(np.array([0, 10, 1], np.uint8))}, "0..9, found 10"),
        ({"t10k_images_idx3_ubyte": idx_bytes(np.zeros((3, 28, 27), np.uint8))}, "28, 27"),
        ({"t10k_images_idx3_ubyte": idx_bytes(np.zeros((3, 784), np.uint8))}, "images"),
        ({"train_images_idx3_ubyte": idx_bytes(np.zeros((5, 28, 28), np.float32))}, "uint8"),
        ({"train_labels_idx1_ubyte": idx_bytes(np.zeros(5, np.int32))}, "uint8 labels"),
        ({"train_labels_idx1_ubyte": idx_bytes(np.zeros((5, 1), np.uint8))}, "labels"),
        ({"t10k_labels_idx1_ubyte": idx_bytes(np.zeros(3, np.uint8))[:-1]}, "truncated"),
    ],
    ids=[
        "count-mismatch",
        "label-10",
        "image-27-wide",
        "images-2d",
        "float-images",
        "int32-labels",
        "labels-2d",
        "truncated-labels",
    ],
)
def test_load_fashion_mnist_rejects_bad_content(tmp_path, override, message):
    write_fashion(tmp_path, **override)
    with pytest.raises(ValueError, match=message):
        datasets.load_fashion_mnist(tmp_path)


@pytest.fixture(scope="module")
def real_fashion_mnist():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DELTAPROP_FASHION_MNIST", raising=False)
        return datasets.load_fashion_mnist()


def test_load_fashion_mnist_real_data(real_fashion_mnist):
    # Needs Debian's dataset-fashion-mnist, which .ci/run installs.
    (X_train, y_train), (X_test, y_test) = real_fashion_mnist
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert X_train.dtype == np.float32 and X_test.dtype == np.float32
    assert y_train.dtype == np.int64 and X_train.flags.c_contiguous
    for X in (X_train, X_test):
        assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), [1000] * 10)
    # The first labels, read off the decompressed files with a hex dump.
    np.testing.assert_array_equal(y_train[:4], [9, 0, 0, 3])
    np.testing.assert_array_equal(y_test[:4], [9, 2, 1, 1])


# --------------------------------------------------------------------------- standardize


def test_standardize_hand_worked():
    X_tr, X_te, (mean, std) = datasets.standardize([[0.0, 5.0], [2.0, 5.0]], [[4.0, 6.0]])
    np.testing.assert_array_equal(X_tr, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(X_te, [[3.0, 1.0]])
    np.testing.assert_array_equal(mean, [1.0, 5.0])
    np.testing.assert_array_equal(std, [1.0, 1.0])  # the constant column gets std 1


def test_standardize_statistics(rng, dtype):
    scale, offset = np.array([1e-3, 1.0, 50.0]), np.array([-7.0, 0.0, 1e3])
    X_train = (rng.standard_normal((500, 3)) * scale + offset).astype(dtype)
    X_test = (rng.standard_normal((40, 3)) * scale + offset).astype(dtype)
    train_std, test_std, (mean, std) = datasets.standardize(X_train, X_test)
    for arr in (train_std, test_std, mean, std):
        assert arr.dtype == np.dtype(dtype)
    # Rounding the mean to the dtype costs eps * |mean| / std per column in the results.
    tol = 8 * np.finfo(dtype).eps * (1 + np.abs(offset) / scale)
    assert np.all(np.abs(train_std.mean(axis=0, dtype=np.float64)) <= tol)
    assert np.all(np.abs(train_std.std(axis=0, dtype=np.float64) - 1) <= tol)
    # the test set uses the training statistics, computed here in float64
    X64 = X_train.astype(np.float64)
    expected = (X_test.astype(np.float64) - X64.mean(axis=0)) / X64.std(axis=0)
    assert np.all(np.abs(test_std - expected) <= tol * (1 + np.abs(expected)))
    np.testing.assert_allclose(mean, X64.mean(axis=0), rtol=8 * np.finfo(dtype).eps)


def test_standardize_constant_column_stays_finite(rng):
    X_train = rng.standard_normal((30, 3))
    X_train[:, 1] = 0.1  # not exactly representable: its float mean may be off by an ulp
    X_test = np.full((4, 3), 1.1)
    train_std, test_std, (mean, std) = datasets.standardize(X_train, X_test)
    assert np.all(np.isfinite(train_std)) and np.all(np.isfinite(test_std))
    np.testing.assert_array_equal(train_std[:, 1], 0.0)
    assert std[1] == 1.0 and mean[1] == 0.1
    np.testing.assert_allclose(test_std[:, 1], 1.0)


def test_standardize_one_or_many_arrays_and_fresh_results():
    X = np.arange(12.0).reshape(4, 3)
    before = X.copy()
    X_std, (mean, std) = datasets.standardize(X)
    assert not np.shares_memory(X_std, X)
    np.testing.assert_array_equal(mean, [4.5, 5.5, 6.5])
    np.testing.assert_allclose(std, np.sqrt(11.25))  # population std of 0, 3, 6, 9
    np.testing.assert_array_equal(X, before)
    *parts, stats = datasets.standardize(X, X[:1], X[:0], X.astype(np.float32))
    assert [p.shape for p in parts] == [(4, 3), (1, 3), (0, 3), (4, 3)]
    assert parts[3].dtype == np.float32 and stats[0].dtype == np.float64
    np.testing.assert_array_equal(parts[1], parts[0][:1])


def test_standardize_integers_become_float64():
    X_std, (mean, _) = datasets.standardize(np.array([[0, 1], [2, 3]], dtype=np.uint8))
    assert X_std.dtype == np.float64 and mean.dtype == np.float64
    np.testing.assert_array_equal(X_std, [[-1, -1], [1, 1]])


@pytest.mark.parametrize(
    "X_train, others, message",
    [
        (np.zeros(3), (), "X_train must be 2-D"),
        (np.zeros((0, 3)), (), "at least one sample"),
        (np.array([[0.0, np.nan]]), (), "finite"),
        (np.array([[0.0, np.inf]]), (), "finite"),
        (np.array([["a", "b"]]), (), "real numbers"),
        (np.zeros((2, 3)), (np.zeros((2, 4)),), r"others\[0\] has 4 features"),
        (np.zeros((2, 3)), (np.zeros((2, 3)), np.zeros(3)), r"others\[1\] must be 2-D"),
    ],
    ids=["1d", "no-samples", "nan", "inf", "strings", "features", "others-1d"],
)
def test_standardize_rejects_bad_input(X_train, others, message):
    with pytest.raises(ValueError, match=message):
        datasets.standardize(X_train, *others)


# -------------------------------------------------------------------------- hostile files
IDX_CLAIMING_46_TIB = """
import gzip, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from deltaprop import datasets
header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (4_000_000_000, 4096, 3000))
path, compressed = sys.argv[1], sys.argv[2] == "gz"
with (gzip.open if compressed else open)(path, "wb") as file:
    file.write(header + bytes(1000))
try:
    datasets.read_idx(path)
except datasets.IDXFormatError as error:
    print("refused:", error)
"""


@under_address_space_limit
@pytest.mark.parametrize("compression", ["plain", "gz"])
def test_idx_header_claiming_terabytes_is_refused_under_a_memory_limit(tmp_path, compression):
    done = subprocess.run(
        [sys.executable, "-c", IDX_CLAIMING_46_TIB, str(tmp_path / "x.idx"), compression],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-1000:]
    assert done.stdout.startswith("refused:") and "truncated" in done.stdout


def test_read_idx_of_a_fifo_fails_at_once(tmp_path):
    fifo = tmp_path / "images.idx"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        datasets.read_idx(fifo)


def gzip_bomb(header, zero_megabytes):
    """A small multi-member gzip file: ``header``, then ``zero_megabytes`` MiB of zeros."""
    member = gzip.compress(bytes(1 << 20), 9)  # 1 MiB of zeros in about 1 KiB
    return gzip.compress(header) + member * zero_megabytes


def peak_traced_bytes(read):
    """Call ``read`` (which must raise IDXFormatError); return it and the peak memory."""
    tracemalloc.start()
    try:
        with pytest.raises(datasets.IDXFormatError) as excinfo:
            read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return excinfo.value, peak


def test_gzip_bomb_claiming_2_to_the_31_images_is_refused_before_inflating(tmp_path):
    # 64 MiB of zeros in 70 KB under a header claiming 2**31 one-byte images: a stream this
    # short cannot inflate to the claim, so it is known truncated before anything inflates.
    header = bytes([0, 0, 8, 1]) + struct.pack(">I", 2**31)
    path = write(tmp_path / "bomb.gz", gzip_bomb(header, 64), False)
    error, peak = peak_traced_bytes(lambda: datasets.read_idx(path))
    assert "truncated" in str(error) and str(2**31) in str(error)
    assert peak < 1 << 23  # the 64 MiB present were never inflated


def test_gzip_claim_over_max_bytes_is_refused_before_inflating(tmp_path):
    # A valid file: 32 MiB of zeros, as its header says; under max_bytes=1 MiB it is refused.
    header = bytes([0, 0, 8, 1]) + struct.pack(">I", 32 << 20)
    path = write(tmp_path / "zeros.gz", gzip_bomb(header, 32), False)
    error, peak = peak_traced_bytes(lambda: datasets.read_idx(path, max_bytes=1 << 20))
    assert "over max_bytes=1048576" in str(error) and str(path) in str(error)
    assert peak < 1 << 23


def test_gzip_stream_longer_than_its_claim_stops_inflating_at_the_claim(tmp_path):
    header = bytes([0, 0, 8, 1]) + struct.pack(">I", 10)
    path = write(tmp_path / "long.gz", gzip_bomb(header + bytes(10), 64), False)
    error, peak = peak_traced_bytes(lambda: datasets.read_idx(path))
    assert "trailing" in str(error)
    assert peak < 1 << 23


def test_read_idx_max_bytes_is_the_largest_data_read(tmp_path, compress):
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)  # 48 data bytes
    path = write(tmp_path / "a.idx", idx_bytes(array), compress)
    np.testing.assert_array_equal(datasets.read_idx(path, max_bytes=48), array)
    with pytest.raises(datasets.IDXFormatError, match="48 data bytes, over max_bytes=47"):
        datasets.read_idx(path, max_bytes=47)
    assert datasets.IDX_MAX_BYTES == 1 << 30  # the documented default


@pytest.mark.parametrize(
    "max_bytes, error", [("48", TypeError), (48.0, TypeError), (-1, ValueError)]
)
def test_read_idx_rejects_a_bad_max_bytes(tmp_path, max_bytes, error):
    path = write(tmp_path / "a.idx", VALID, False)
    with pytest.raises(error, match="max_bytes"):
        datasets.read_idx(path, max_bytes=max_bytes)
