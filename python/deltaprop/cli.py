"""Command line: ``deltaprop [train] [options]`` (also ``python -m deltaprop``).

Trains a network on the digits data shipped with the package, printing per-epoch
progress and the final accuracy on a held-out test split.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from . import datasets
from .network import ACTIVATIONS, COSTS, INITS, OUTPUTS, Network


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deltaprop",
        description="Train a multilayer perceptron by backpropagation on the shipped 8x8 digits.",
    )
    commands = parser.add_subparsers(dest="command")
    train = commands.add_parser("train", help="train on the shipped digits (the default)")
    for p in (parser, train):
        _add_train_options(p)
    return parser


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="*",
        default=[30],
        metavar="N",
        help="hidden layer sizes (default: 30)",
    )
    parser.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid")
    parser.add_argument("--output", choices=OUTPUTS, default="softmax")
    parser.add_argument("--cost", choices=COSTS, default="log_likelihood")
    parser.add_argument("--init", choices=INITS, default="normal_scaled")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.5, help="learning rate eta")
    parser.add_argument("--lmbda", type=float, default=0.0, help="L2 regularisation lambda")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--seed", type=int, default=0)


def train(args: argparse.Namespace) -> float:
    X, y = datasets.load_digits(dtype=args.dtype)
    (X_train, y_train), (X_test, y_test) = datasets.train_test_split(
        X, y, test_fraction=args.test_fraction, seed=args.seed
    )
    sizes = [X.shape[1], *args.hidden, 10]
    net = Network(
        sizes,
        activation=args.activation,
        output=args.output,
        cost=args.cost,
        dtype=args.dtype,
        init=args.init,
        seed=args.seed,
    )
    print(f"{net}: {len(X_train)} training and {len(X_test)} test digits")
    start = time.perf_counter()
    net.fit(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lmbda=args.lmbda,
        seed=args.seed,
        validation_data=(X_test, y_test),
        verbose=True,
    )
    accuracy = net.evaluate(X_test, y_test)
    print(
        f"test accuracy {accuracy:.4f} after {args.epochs} epochs "
        f"({time.perf_counter() - start:.2f} s)"
    )
    return accuracy


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        train(args)
    except (ValueError, TypeError) as error:
        print(f"deltaprop: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
