"""Time to 88% test accuracy: C's setting on Fashion-MNIST, deltaprop against PyTorch.

    python bench/time_to_accuracy.py [--max-epochs 20] [--target 0.88]

Both start from the same weights (deltaprop's He initialisation, copied into torch's
``nn.Linear`` layers) and train with the same hyper-parameters (configuration C in _common.py:
[784, 256, 128, 10], ReLU, softmax + log-likelihood, SGD with momentum 0.9, batch 128,
float32) through the same row orders (epoch e visits the rows in
``np.random.default_rng(SEED + e).permutation(60000)``), so that their accuracy curves match.
After each epoch the test accuracy is measured outside the clock; the time reported is the
training time only, summed over the epochs up to the first at or above the target.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import peers
from _common import CONFIGS, SEED, data, make_network
from report import time_to_accuracy_table

TARGET = 0.88
MAX_EPOCHS = 20
SMOKE_ROWS = 1024


def train_until(implementation: str, target: float, max_epochs: int, rows: int | None) -> dict:
    config = CONFIGS["C"]
    train, test = data("train", config.dtype), data("test", config.dtype)
    X, Y, labels = train.X[:rows], train.Y[:rows], train.labels[:rows]
    peer = peers.make(implementation, config, X, Y, labels, make_network(config))
    seconds, curve, times = 0.0, [], []
    reached = None
    for epoch in range(max_epochs):
        started = time.perf_counter()
        peer.epoch(SEED + epoch)
        elapsed = time.perf_counter() - started
        seconds += elapsed
        times.append(elapsed)
        outputs = peer.predict(test.X)
        curve.append(float(np.mean(outputs.argmax(axis=1) == test.labels)))
        if curve[-1] >= target:
            reached = {"epochs": epoch + 1, "seconds": seconds}
            break
    return {
        "lr": config.lr,
        "momentum": config.momentum,
        "batch_size": config.batch_size,
        "target": target,
        "reached": reached,
        "accuracy": curve,
        "epoch_seconds": times,
        "training_seconds": seconds,
    }


def run(
    implementations=("deltaprop", "torch"),
    target: float = TARGET,
    max_epochs: int = MAX_EPOCHS,
    smoke: bool = False,
) -> dict[str, dict]:
    """Implementation -> its run (see train_until); smoke: one epoch on a few rows."""
    rows = SMOKE_ROWS if smoke else None
    epochs = 1 if smoke else max_epochs
    return {impl: train_until(impl, target, epochs, rows) for impl in implementations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    parser.add_argument("--target", type=float, default=TARGET)
    args = parser.parse_args()
    available = peers.available()
    implementations = [i for i in ("deltaprop", "torch") if available[i] is not None]
    runs = run(implementations, args.target, args.max_epochs)
    time_to_accuracy_table(runs)


if __name__ == "__main__":
    main()
