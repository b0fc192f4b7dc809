"""Test accuracy on Fashion-MNIST: Nielsen's settings and a ReLU/Adam network, deltaprop next
to scikit-learn's MLPClassifier with the same hidden sizes and as close a setting as it has.

    python bench/accuracy_runs.py [--epochs-scale 1.0] [--skip-sklearn]

Needs the data (``apt-get install dataset-fashion-mnist``) and, for the comparison,
scikit-learn. Prints a Markdown table; each run's setting is in its row.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

import deltaprop as dp


@dataclass
class Setting:
    name: str
    sizes: list[int]
    network: dict
    fit: dict
    sklearn: dict = field(default_factory=dict)
    target: float | None = None


SETTINGS = [
    Setting(
        "Nielsen ch. 1: sigmoid, quadratic, SGD eta=3.0, batch 10",
        [784, 30, 10],
        {"activation": "sigmoid", "output": "sigmoid", "cost": "quadratic"},
        {"optimizer": "sgd", "lr": 3.0, "batch_size": 10, "epochs": 30},
        # scikit-learn has no quadratic cost: its log-loss with Nielsen's ch. 3 rate.
        {
            "activation": "logistic",
            "solver": "sgd",
            "learning_rate_init": 0.5,
            "alpha": 0.0,
            "batch_size": 10,
            "max_iter": 30,
            "momentum": 0.0,
        },
    ),
    Setting(
        "Nielsen ch. 3: sigmoid, cross-entropy, L2 lambda=5.0, eta=0.5, batch 10",
        [784, 100, 10],
        {"activation": "sigmoid", "output": "sigmoid", "cost": "cross_entropy"},
        {"optimizer": "sgd", "lr": 0.5, "lmbda": 5.0, "batch_size": 10, "epochs": 30},
        # scikit-learn adds alpha W / batch_size to a batch's gradient; Nielsen (lambda/n) W.
        {
            "activation": "logistic",
            "solver": "sgd",
            "learning_rate_init": 0.5,
            "alpha": 5.0 * 10 / 60000,
            "batch_size": 10,
            "max_iter": 30,
            "momentum": 0.0,
        },
    ),
    Setting(
        "ReLU, softmax + log-likelihood, Adam lr=1e-3, batch 128",
        [784, 256, 128, 10],
        {
            "activation": "relu",
            "output": "softmax",
            "cost": "log_likelihood",
            "init": "he",
            "dtype": "float32",
        },
        {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": 20},
        {
            "activation": "relu",
            "solver": "adam",
            "learning_rate_init": 1e-3,
            "alpha": 0.0,
            "batch_size": 128,
            "max_iter": 20,
        },
        target=0.89,
    ),
]


def run_deltaprop(setting: Setting, data, epochs_scale: float) -> tuple[float, float]:
    (X, y), (X_test, y_test) = data
    net = dp.Network(setting.sizes, seed=0, **setting.network)
    fit = dict(setting.fit, epochs=max(1, round(setting.fit["epochs"] * epochs_scale)))
    start = time.perf_counter()
    net.fit(X, y, seed=0, **fit)
    return net.evaluate(X_test, y_test), time.perf_counter() - start


def run_sklearn(setting: Setting, data, epochs_scale: float) -> tuple[float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    (X, y), (X_test, y_test) = data
    options = dict(setting.sklearn)
    options["max_iter"] = max(1, round(options["max_iter"] * epochs_scale))
    model = MLPClassifier(
        hidden_layer_sizes=setting.sizes[1:-1],
        random_state=0,
        shuffle=True,
        tol=0.0,
        n_iter_no_change=10**9,
        **options,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return float(model.score(X_test, y_test)), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args()
    data = dp.datasets.load_fashion_mnist(dtype="float64")
    print("| setting | network | deltaprop test accuracy (time) | scikit-learn MLPClassifier |")
    print("|---|---|---|---|")
    for setting in SETTINGS:
        if setting.network.get("dtype") == "float32":
            setting_data = tuple((X.astype(np.float32), y) for X, y in data)
        else:
            setting_data = data
        accuracy, seconds = run_deltaprop(setting, setting_data, args.epochs_scale)
        mark = "" if setting.target is None else (" ✓" if accuracy >= setting.target else " ✗")
        ours = f"{accuracy:.4f} ({seconds:.1f} s){mark}"
        if args.skip_sklearn:
            theirs = "not run"
        else:
            sk_accuracy, sk_seconds = run_sklearn(setting, data, args.epochs_scale)
            theirs = f"{sk_accuracy:.4f} ({sk_seconds:.1f} s)"
        print(f"| {setting.name} | {setting.sizes} | {ours} | {theirs} |", flush=True)


if __name__ == "__main__":
    main()
