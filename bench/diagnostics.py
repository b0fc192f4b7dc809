"""What fit(diagnostics=True) costs: one epoch with and without it, configurations C and A.

    python bench/diagnostics.py [--rounds 7] [--rows 60000] [--threads N] [--cpu-time]

Trains one network per configuration (bench/_common.py's C: [784, 256, 128, 10], ReLU,
momentum, batches of 128, float32; A: Nielsen's [784, 30, 10] sigmoid network, batches
of 10) on Fashion-MNIST's training images (synthetic pixels without the data set),
alternating epochs with and without diagnostics, and prints a Markdown table of the
median seconds per epoch and their ratio. The target is at most 5% more for C. On a
machine others share, ``--threads 1 --cpu-time`` (the process's CPU seconds, one thread)
is steadier than the wall clock.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import deltaprop as dp

sys.path.insert(0, str(Path(__file__).parent))
from _common import CONFIGS, data, data_source, make_network, make_optimizer


def epoch_seconds(config, rows: int, rounds: int, clock) -> dict[bool, float]:
    """Median seconds of one fit epoch, without (False) and with (True) diagnostics."""
    train = data("train", config.dtype).first(rows)
    net = make_network(config)
    net.optimizer = make_optimizer(config)
    lmbda = config.lmbda
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(rounds + 1):  # the first round warms up (workspaces, threads)
        for diagnostics in (False, True) if round_ % 2 == 0 else (True, False):
            start = clock()
            net.fit(train.X, train.labels, epochs=1, batch_size=config.batch_size,
                    lmbda=lmbda, seed=round_, diagnostics=diagnostics)  # fmt: skip
            if round_ > 0:
                seconds[diagnostics].append(clock() - start)
    return {key: statistics.median(values) for key, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="epochs timed of each kind")
    parser.add_argument("--rows", type=int, default=60_000, help="training rows per epoch")
    parser.add_argument("--threads", type=int, default=None, help="the core's threads")
    parser.add_argument("--cpu-time", action="store_true", help="CPU seconds, not wall-clock")
    args = parser.parse_args()
    if args.threads is not None:
        dp.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"{data_source()}, {args.rows} rows, {dp.get_num_threads()} threads, "
          f"{'CPU' if args.cpu_time else 'wall-clock'} seconds, median of {args.rounds} "
          "epochs each\n")  # fmt: skip
    print("| configuration | epoch without (s) | with diagnostics (s) | ratio |")
    print("| --- | --- | --- | --- |")
    for key in ("C", "A"):
        config = CONFIGS[key]
        seconds = epoch_seconds(config, args.rows, args.rounds, clock)
        ratio = seconds[True] / seconds[False]
        print(f"| {key}: {config.title} | {seconds[False]:.3f} | {seconds[True]:.3f} | "
              f"{ratio:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
