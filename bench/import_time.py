"""What ``import deltaprop`` adds to ``import numpy``: the median over fresh processes.

    python bench/import_time.py [-n 15]

Each process imports numpy, then times ``import deltaprop`` (the installed package) alone
with ``time.perf_counter``: the package's own cost, its compiled core and OpenBLAS included,
not numpy's. tests/test_layout.py keeps what the import loads in check.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CHILD = (
    "import time, numpy; start = time.perf_counter(); import deltaprop; "
    "print(time.perf_counter() - start)"
)


def added_ms(n: int) -> list[float]:
    """Milliseconds ``import deltaprop`` took after ``import numpy`` in each of n processes."""
    times = []
    for _ in range(n):
        child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
        if child.returncode:
            sys.exit(child.stderr)
        times.append(1e3 * float(child.stdout))
    return times


def main() -> None:
    """Print the median, the quartiles and the range of the added milliseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="fresh processes (default 15)")
    times = sorted(added_ms(parser.parse_args().n))
    q1, _, q3 = statistics.quantiles(times, n=4)
    print(
        f"import deltaprop after import numpy: median {statistics.median(times):.1f} ms "
        f"(quartiles {q1:.1f}-{q3:.1f}, range {times[0]:.1f}-{times[-1]:.1f}; "
        f"{len(times)} processes, Python {sys.version.split()[0]})"
    )


if __name__ == "__main__":
    main()
