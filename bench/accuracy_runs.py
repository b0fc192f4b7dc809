"""Test accuracy on Fashion-MNIST in the settings of A and B (Nielsen's) and of C with Adam,
deltaprop next to scikit-learn's MLPClassifier, both from the same initial weights.

    python bench/accuracy_runs.py [--epochs-scale 1.0] [--skip-sklearn]

Needs the data (``apt-get install dataset-fashion-mnist``) and, for the comparison, scikit-learn.
scikit-learn has no quadratic cost: in A it trains with its log-loss at B's rate 0.5. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses

from _common import CONFIGS
from time_to_accuracy import train_until

# (setting, epochs, scikit-learn's changes to it, test accuracy to reach)
SETTINGS = [
    (CONFIGS["A"], 30, {"lr": 0.5}, None),
    (CONFIGS["B"], 30, {}, None),
    (
        dataclasses.replace(
            CONFIGS["C"], title="ReLU, softmax + log-likelihood", optimizer="adam", lr=1e-3
        ),
        20,
        {},
        0.89,
    ),
]


def describe(run: dict, target: float | None = None) -> str:
    """Final test accuracy and training time, with a mark for the target when there is one."""
    accuracy = run["accuracy"][-1]
    mark = "" if target is None else (" ✓" if accuracy >= target else " ✗")
    return f"{accuracy:.4f} ({run['training_seconds']:.1f} s){mark}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args()
    print("| setting | network | deltaprop test accuracy (time) | scikit-learn MLPClassifier |")
    print("|---|---|---|---|")
    for config, epochs, sklearn_changes, target in SETTINGS:
        epochs = max(1, round(epochs * args.epochs_scale))
        ours = describe(train_until("deltaprop", config, epochs), target)
        theirs = "not run"
        if not args.skip_sklearn:
            sklearn_config = dataclasses.replace(config, **sklearn_changes)
            theirs = describe(train_until("sklearn", sklearn_config, epochs))
        setting = f"{config.title}, {config.optimizer} lr {config.lr}, batch {config.batch_size}"
        print(f"| {setting}, {epochs} epochs | {list(config.sizes)} | {ours} | {theirs} |")


if __name__ == "__main__":
    main()
