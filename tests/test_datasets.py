"""Tests for deltaprop.datasets: the bundled digits and the small data helpers."""

import gzip
import hashlib
from importlib.resources import files

import numpy as np
import pytest

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


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), "0.2", None, True])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
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
