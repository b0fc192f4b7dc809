"""An epoch of C on 20,000 rows alone and beside busy processes: deltaprop (float32, and
bfloat16 products) and PyTorch, with the threads deltaprop uses; then what threadpoolctl sees.

    python bench/contention.py [--rows 20000] [--busy 0 1]

A busy process is ``python -c "while True: pass"``, started before the epochs and killed after.
Prints a Markdown table of the median of 5 epochs (after one warm-up) and each one's ratio to
its time alone.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time

import numpy as np
import peers
from _common import CONFIGS, SEED, data, threads
from threadpoolctl import threadpool_info

ROUNDS = 5


@contextlib.contextmanager
def busy_processes(n: int):
    """`n` processes spinning on the CPU for as long as the block runs."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.5)  # let them start
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait()


def median_epoch(peer) -> float:
    """Seconds of one epoch: the median of ROUNDS after a warm-up."""
    peer.epoch(SEED)
    seconds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        peer.epoch(SEED)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    runners = [("deltaprop", "C"), ("deltaprop", "C-bf16"), ("torch", "C")]
    available = peers.available()
    runners = [(i, key) for i, key in runners if available[i] is not None]
    rows = data("train", "float32").first(args.rows)
    seconds = {}
    for busy in args.busy:
        with busy_processes(busy):
            for implementation, key in runners:
                peer = peers.make(implementation, CONFIGS[key], rows)
                seconds[implementation, key, busy] = median_epoch(peer)
    print(f"| implementation | {' | '.join(f'{b} busy' for b in args.busy)} |")
    print(f"|---|{'---:|' * len(args.busy)}")
    for implementation, key in runners:
        times = [seconds[implementation, key, b] for b in args.busy]
        cells = [f"{t:.3f} s ({t / times[0]:.2f}x)" for t in times]
        print(f"| {implementation} {key} | {' | '.join(cells)} |")
    print(f"\n{threads()} threads. What threadpoolctl sees in this process:\n")
    for pool in threadpool_info():
        print(f"- {pool['internal_api']} ({pool['user_api']}): {pool['num_threads']} threads, "
              f"{pool['filepath']}")  # fmt: skip


if __name__ == "__main__":
    main()
