"""Synthetic, Fashion-MNIST-shaped data for the benchmarks.

Random data times the same arithmetic as the real images (the cost of a dense MLP does not
depend on the values) without a download: 60000 images of 28 x 28 uint8 pixels scaled to
[0, 1] as pixel / 255, and labels 0..9, drawn from a fixed seed.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

# test_bench_core.py imports the sibling module numpy_mlp. pytest's default import mode puts
# this folder on sys.path already; --import-mode=importlib does not, so make sure here.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

N_IMAGES, N_PIXELS, N_CLASSES = 60_000, 28 * 28, 10
DATA_SEED = 20_240_601


@pytest.fixture(scope="session")
def fashion_like() -> tuple[np.ndarray, np.ndarray]:
    """pixels : uint8 ndarray of shape (60000, 784); labels : int64 ndarray of shape (60000,)."""
    rng = np.random.default_rng(DATA_SEED)
    pixels = rng.integers(0, 256, size=(N_IMAGES, N_PIXELS), dtype=np.uint8)
    labels = rng.integers(0, N_CLASSES, size=N_IMAGES)
    return pixels, labels


@pytest.fixture(scope="session")
def training_rows(fashion_like):
    """``training_rows(n, dtype) -> (X, Y)``: the first n images as inputs and one-hot targets.

    X : ndarray of shape (n, 784), C-contiguous, in `dtype`, values in [0, 1]
    Y : ndarray of shape (n, 10), one-hot, in `dtype`

    Results are cached, so every benchmark of a dtype sees the very same arrays.
    """
    pixels, labels = fashion_like

    @functools.lru_cache(maxsize=None)
    def rows(n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        X = pixels[:n].astype(dtype) / np.array(255, dtype=dtype)
        Y = np.eye(N_CLASSES, dtype=dtype)[labels[:n]]
        X.flags.writeable = False
        Y.flags.writeable = False
        return X, Y

    return rows
