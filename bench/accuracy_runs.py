"""Test accuracy on Fashion-MNIST in the settings of A and B (Nielsen's) and of C with Adam,
deltaprop next to scikit-learn's MLPClassifier, both from the same initial weights; then C with
Adam in bfloat16 products, next to deltaprop's float32 run from the same weights and row orders
(the target: >= 0.89 and at most 0.003 below float32).

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

C_ADAM = dict(title="ReLU, softmax + log-likelihood", optimizer="adam", lr=1e-3)
# (setting, epochs, scikit-learn's changes to it, test accuracy to reach)
SETTINGS = [
    (CONFIGS["A"], 30, {"lr": 0.5}, None),
    (CONFIGS["B"], 30, {}, None),
    (dataclasses.replace(CONFIGS["C"], **C_ADAM), 20, {}, 0.89),
]
BFLOAT16 = dataclasses.replace(
    CONFIGS["C-bf16"], **{**C_ADAM, "title": f"{C_ADAM['title']}, bfloat16 products"}
)
MAX_LOSS_TO_FLOAT32 = 0.003


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
    runs = {}
    for config, epochs, sklearn_changes, target in SETTINGS:
        epochs = max(1, round(epochs * args.epochs_scale))
        runs[config.key] = train_until("deltaprop", config, epochs)
        theirs = "not run"
        if not args.skip_sklearn:
            sklearn_config = dataclasses.replace(config, **sklearn_changes)
            theirs = describe(train_until("sklearn", sklearn_config, epochs))
        row(config, epochs, describe(runs[config.key], target), theirs)
    epochs = max(1, round(20 * args.epochs_scale))
    bfloat16 = train_until("deltaprop", BFLOAT16, epochs)
    below = runs["C"]["accuracy"][-1] - bfloat16["accuracy"][-1]
    mark = " ✓" if bfloat16["accuracy"][-1] >= 0.89 and below <= MAX_LOSS_TO_FLOAT32 else " ✗"
    print_row = f"{describe(bfloat16)}, {below:+.4f} below float32{mark}"
    row(BFLOAT16, epochs, print_row, "no bfloat16")


def row(config, epochs: int, ours: str, theirs: str) -> None:
    """One line of the table."""
    setting = f"{config.title}, {config.optimizer} lr {config.lr}, batch {config.batch_size}"
    print(f"| {setting}, {epochs} epochs | {list(config.sizes)} | {ours} | {theirs} |")


if __name__ == "__main__":
    main()
