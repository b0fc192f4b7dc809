"""Time to 88% test accuracy: configuration C on Fashion-MNIST, deltaprop against PyTorch.

    python bench/time_to_accuracy.py [--max-epochs 20] [--target 0.88]

Both start from the same weights and train through the same row orders (epoch e in
``epoch_order(60000, SEED + e)``), so that their accuracy curves match. The test accuracy after
each epoch is measured outside the clock: the time is the training time only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import peers
from _common import CONFIGS, SEED, Config, data
from report import time_to_accuracy_table

TARGET, MAX_EPOCHS, SMOKE_ROWS = 0.88, 20, 1024


def train_until(
    implementation: str, config: Config, max_epochs: int, target: float | None = None, rows=None
) -> dict:
    """Train on the first `rows` training rows (None: all) until the test accuracy reaches
    `target` or `max_epochs` have run; the accuracy curve, the time, and when it was reached."""
    test = data("test", config.dtype)
    peer = peers.make(implementation, config, data("train", config.dtype).first(rows))
    seconds, curve, reached = 0.0, [], None
    for epoch in range(max_epochs):
        started = time.perf_counter()
        peer.epoch(SEED + epoch)
        seconds += time.perf_counter() - started
        curve.append(float(np.mean(peer.predict(test.X).argmax(axis=1) == test.labels)))
        if target is not None and curve[-1] >= target:
            reached = {"epochs": epoch + 1, "seconds": seconds}
            break
    return {"accuracy": curve, "training_seconds": seconds, "reached": reached, "target": target}


def run(target: float = TARGET, max_epochs: int = MAX_EPOCHS, smoke: bool = False) -> dict:
    """Implementation -> its run in C's setting, for deltaprop and PyTorch if installed; smoke:
    one epoch on a few rows."""
    installed = [i for i in ("deltaprop", "torch") if peers.available()[i] is not None]
    epochs, rows = (1, SMOKE_ROWS) if smoke else (max_epochs, None)
    return {i: train_until(i, CONFIGS["C"], epochs, target, rows) for i in installed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    parser.add_argument("--target", type=float, default=TARGET)
    args = parser.parse_args()
    time_to_accuracy_table(run(args.target, args.max_epochs))


if __name__ == "__main__":
    main()
