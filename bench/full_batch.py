"""Full-batch L-BFGS: deltaprop's fit(optimizer="lbfgs") next to scikit-learn's
MLPClassifier(solver="lbfgs"), same sizes, iterations and L2 strength.

    python bench/full_batch.py [--iterations-scale 1.0]

Prints two Markdown tables: test accuracy on the 8x8 digits and on a 10,000-image
Fashion-MNIST subset, and seconds per L-BFGS iteration on Fashion-MNIST's 60,000 training
images with configuration C's network ([784, 256, 128, 10], ReLU, softmax, float32), both
measured in this run. Needs the data (``apt-get install dataset-fashion-mnist``),
scikit-learn and scipy.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import deltaprop as dp
from deltaprop.sklearn import DeltapropClassifier

sys.path.insert(0, str(Path(__file__).parent))
from _common import CONFIGS, GemmLimit

ALPHA = 1e-4  # MLPClassifier's default L2 strength, for both


def fashion(n_train: int | None, dtype: str):
    """(X_train, y_train, X_test, y_test) of Fashion-MNIST, the first n_train images."""
    (X, y), (X_test, y_test) = dp.datasets.load_fashion_mnist(dtype=dtype)
    return X[:n_train], y[:n_train], X_test, y_test


def digits():
    X, y = dp.datasets.load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    return X_train, y_train, X_test, y_test


def train_both(hidden, iterations, data, dtype):
    """{name: (fitted estimator, seconds)} for deltaprop and scikit-learn."""
    X_train, y_train = data[0], data[1]
    options = dict(hidden_layer_sizes=hidden, alpha=ALPHA, max_iter=iterations, random_state=0)
    models = {
        "deltaprop": DeltapropClassifier(optimizer="lbfgs", dtype=dtype, **options),
        "scikit-learn": MLPClassifier(solver="lbfgs", **options),
    }
    fitted = {}
    for name, model in models.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_train, y_train)
        fitted[name] = (model, time.perf_counter() - start)
    return fitted


def accuracy_table(scale: float) -> None:
    print("| data | network | L-BFGS iterations | deltaprop test accuracy | scikit-learn |")
    print("|---|---|---:|---:|---:|")
    for label, data, hidden, iterations in (
        ("digits (1,347 / 450)", digits(), (30,), 200),
        ("Fashion-MNIST 10,000 / 10,000", fashion(10_000, "float64"), (100,), 200),
    ):
        iterations = max(1, round(iterations * scale))
        fitted = train_both(hidden, iterations, data, "float64")
        cells = [
            f"{model.score(data[2], data[3]):.4f} ({model.n_iter_} it., {seconds:.1f} s)"
            for model, seconds in fitted.values()
        ]
        sizes = [data[0].shape[1], *hidden, 10]
        print(f"| {label} | {sizes} | {iterations} | {cells[0]} | {cells[1]} |")


def speed_table(scale: float) -> None:
    iterations = max(2, round(20 * scale))
    data = fashion(None, "float32")
    fitted = train_both((256, 128), iterations, data, "float32")
    per_iteration = {name: s / model.n_iter_ for name, (model, s) in fitted.items()}
    ratio = per_iteration["scikit-learn"] / per_iteration["deltaprop"]
    evaluation, limit = objective_seconds(fitted["deltaprop"][0], data)
    print(
        f"\nSeconds per L-BFGS iteration, Fashion-MNIST 60,000 x 784, [784, 256, 128, 10] ReLU, "
        f"float32, {dp.get_num_threads()} BLAS threads, {iterations} iterations: "
        f"deltaprop {per_iteration['deltaprop']:.3f} s, scikit-learn "
        f"{per_iteration['scikit-learn']:.3f} s ({ratio:.2f}x; target >= 2x). One evaluation "
        f"of deltaprop's objective: {evaluation:.3f} s; the GEMM limit of its products "
        f"(numpy, chunks of 4,096 rows): {limit:.3f} s ({limit / evaluation:.0%} of it)."
    )


def objective_seconds(estimator, data) -> tuple[float, float]:
    """Best of three evaluations of the objective on all rows, and the GEMM limit of one."""
    net = estimator.network_
    X, Y = net.validate(data[0], data[1])
    best = np.inf
    for _ in range(3):
        started = time.perf_counter()
        net.objective(X, Y, lmbda=1.0)
        best = min(best, time.perf_counter() - started)
    gemms = GemmLimit(dataclasses.replace(CONFIGS["C"], batch_size=4096))
    return best, len(X) / gemms.samples_per_s(2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations-scale", type=float, default=1.0)
    args = parser.parse_args()
    np.seterr(all="ignore")  # scikit-learn's lbfgs may overflow in exp on the way
    accuracy_table(args.iterations_scale)
    speed_table(args.iterations_scale)


if __name__ == "__main__":
    main()
