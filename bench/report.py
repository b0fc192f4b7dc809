"""Print a Markdown table of one benchmark run: medians, samples/s and ratios to deltaprop.

Usage, from the repository root::

    python -m pytest bench/ --benchmark-only --benchmark-json=/tmp/deltaprop-bench.json
    python bench/report.py /tmp/deltaprop-bench.json

The reference is timed on a few rows only; its row shows the measured median and the
median extrapolated to the full batch or epoch (from its samples/s), and its ratio uses the
extrapolated time.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

IMPLEMENTATIONS = ("deltaprop", "numpy", "reference")


def _implementation(name: str) -> str:
    # test_<kind>_<implementation>[<config>]
    return name.split("[", 1)[0].rsplit("_", 1)[1]


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"


def main(path: str) -> None:
    with open(path) as file:
        run = json.load(file)
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in run["benchmarks"]:
        groups[bench["group"]][_implementation(bench["name"])] = bench
    print(f"{run['machine_info'].get('cpu', {}).get('brand_raw', '?')}, {run['datetime']}\n")
    print("| group | implementation | median | full-size median | samples/s | time / deltaprop |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for group in sorted(groups):
        benches = groups[group]

        def full_median(bench: dict) -> float:
            info = bench["extra_info"]
            return info.get("extrapolated_median_s", bench["stats"]["median"])

        base = full_median(benches["deltaprop"]) if "deltaprop" in benches else None
        for implementation in IMPLEMENTATIONS:
            if implementation not in benches:
                continue
            bench = benches[implementation]
            info = bench["extra_info"]
            full = full_median(bench)
            extrapolated = " (extrapolated)" if info.get("extrapolated") else ""
            ratio = _ratio(full / base) if base else "-"
            print(
                f"| {group} | {implementation} | {_seconds(bench['stats']['median'])} "
                f"({info['rows_timed']} rows) | {_seconds(full)}{extrapolated} "
                f"| {info.get('samples_per_s', float('nan')):,.0f} | {ratio} |"
            )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/report.py BENCHMARK_JSON")
    main(sys.argv[1])
