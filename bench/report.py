"""Print the comparison tables of one benchmark run (Markdown).

Usage, from the repository root (bench/README.md has the one command)::

    python -m pytest bench/ --benchmark-only --benchmark-json=/tmp/deltaprop-bench.json
    python bench/report.py /tmp/deltaprop-bench.json

Sections, each printed when the run has its benchmarks:

* per configuration A-E (test_bench_peers.py): samples/s of every implementation, deltaprop's
  ratio to each, GFLOP/s, the GEMM limit and deltaprop's fraction of it, and PASS/FAIL against
  the issue's targets; a peer that is not installed is listed as absent, one missing for
  another reason as "not in this run";
* a summary of the targets;
* peak memory (test_peak_rss) and time to accuracy (test_time_to_accuracy);
* the micro-benchmarks of test_bench_core.py: medians, samples/s, time ratios to deltaprop.

Samples/s are rows timed / median round. The reference is timed on a few rows and
extrapolated; its row says so. Reads only the JSON: no deltaprop import needed.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

NAN = float("nan")

IMPLEMENTATIONS = ("deltaprop", "torch", "sklearn", "numpy", "reference")
PEER_LABELS = {
    "deltaprop": "deltaprop",
    "torch": "PyTorch (CPU)",
    "sklearn": "scikit-learn MLPClassifier",
    "numpy": "NumPy (numpy_mlp.py)",
    "reference": "pure-Python reference",
}
MiB = 2**20
COMPARISON_HEADER = (
    "| implementation | rows timed | samples/s | deltaprop / it | target | GFLOP/s | notes |\n"
    "| --- | ---: | ---: | ---: | --- | ---: | --- |"
)


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return "PASS" if value >= target else f"FAIL ({value / target:.0%} of target)"


# ------------------------------------------------------------------------------- A-E
def _comparison(configs: dict[str, dict[str, dict]]) -> list[tuple]:
    """Print one table per configuration; return (config, what, value, target, ceiling) rows:
    ceiling is the largest ratio to a peer any implementation running at the GEMM limit
    reaches (limit samples/s over the peer's), None when unknown."""
    summary = []
    for key in sorted(configs):
        benches = configs[key]
        info = next(iter(benches.values()))["extra_info"]
        ours = benches.get("deltaprop", {}).get("extra_info", {})
        versions = info.get("peers", {})
        targets = info.get("targets", {})
        base = ours.get("samples_per_s")
        limit_rate = benches.get("gemm-limit", {}).get("extra_info", {}).get("samples_per_s")
        synthetic = (
            " (SYNTHETIC: Fashion-MNIST not installed)" if info["data"] == "synthetic" else ""
        )
        quick = "; QUICK RUN, not a measurement" if info.get("quick") else ""
        print(
            f"\n### {key}: {info['title']}\n\n{info['sizes']}, {info['dtype']}, "
            f"batch {info['batch_size']}, {info['threads']} BLAS threads, data: "
            f"{info['data']}{synthetic}, {info['flops_per_sample'] / 1e6:.3g} MFLOP per sample"
            f"{quick}\n"
        )
        for note in info.get("config_notes", []):
            print(f"Note: {note}\n")
        print(COMPARISON_HEADER)
        for implementation in IMPLEMENTATIONS:
            label = PEER_LABELS[implementation]
            bench = benches.get(implementation)
            target = targets.get(implementation)
            if bench is None:
                installed = versions.get(implementation, "unknown")
                why = "absent (not installed)" if installed is None else "not in this run"
                print(f"| {label} | {why} | | | {_target(target)} | | |")
                if target is not None:
                    summary.append((key, implementation, why, target, None))
                continue
            extra = bench["extra_info"]
            rate = extra.get("samples_per_s")
            version = extra.get("version")
            if implementation in ("torch", "sklearn") and version:
                label = f"{label} {version}"
            rows = f"{extra['rows_timed']:,}" + (
                " (extrapolated)" if extra.get("extrapolated") else ""
            )
            ratio = _ratio(base / rate) if base and rate and implementation != "deltaprop" else ""
            verdict = ""
            if target is not None and base and rate:
                verdict = _verdict(base / rate, target)
                ceiling = limit_rate / rate if limit_rate else None
                summary.append((key, implementation, base / rate, target, ceiling))
            gflops = f"{extra['gflops']:.2f}" if "gflops" in extra else ""
            notes = "; ".join(extra.get("notes", []) + _disturbance(extra))
            wanted = "" if implementation == "deltaprop" else f"{_target(target)} {verdict}"
            print(
                f"| {label} | {rows} | {_rate(rate) if rate else '-'} | {ratio} "
                f"| {wanted} | {gflops} | {notes} |"
            )
        limit = benches.get("gemm-limit")
        if limit is not None:
            extra = limit["extra_info"]
            rate = extra.get("samples_per_s")
            fraction = base / rate if base and rate else None
            shown = f"deltaprop at {fraction:.2f} of it" if fraction else ""
            # The verdict uses the limit timed between deltaprop's own rounds when there is one
            # (the same minutes, so the same machine); this row's own figure is shown too.
            interleaved = ours.get("interleaved_limit_samples_per_s")
            if interleaved and base:
                fraction = base / interleaved
                shown += f"; {fraction:.2f} of it timed between deltaprop's rounds"
            target = targets.get("limit")
            verdict = _verdict(fraction, target) if fraction and target else ""
            if fraction and target:
                summary.append((key, "GEMM limit", fraction, target, 1.0))
            remarks = ["the products alone"]
            if interleaved:
                remarks.append(f"{_rate(interleaved)} samples/s between deltaprop's rounds")
            bare = extra.get("samples_per_s_without_call_overhead")
            if bare and base:
                remarks.append(
                    f"without numpy's {extra['call_overhead_s'] * 1e6:.2f} us per matmul call: "
                    f"{_rate(bare)} samples/s, deltaprop at {base / bare:.2f} of it"
                )
            remark = "; ".join(remarks + _disturbance(extra))
            print(
                f"| GEMM limit: numpy matmul, {extra['gemms_per_batch']} GEMMs per batch of "
                f"{extra['gemm_batch']:,} | | {_rate(rate) if rate else '-'} | {shown} "
                f"| {'>= ' + format(target, '.2f') if target else 'none'} {verdict} "
                f"| {extra.get('gflops', float('nan')):.2f} | {remark} |"
            )
        elif "limit" in targets:
            summary.append((key, "GEMM limit", None, targets["limit"], 1.0))
    return summary


# Above this share of the machine's CPU time used by other processes (or stolen by the
# hypervisor) while a benchmark ran, its figure is flagged: re-run on an idle machine.
DISTURBED = 0.03


def _disturbance(extra: dict) -> list[str]:
    others, steal = extra.get("others_cpu_fraction", 0.0), extra.get("steal_fraction", 0.0)
    # /proc/stat counts in 10 ms ticks: too coarse for a window of less than a second.
    if extra.get("monitored_seconds", 0.0) >= 1.0 and (others > DISTURBED or steal > DISTURBED):
        return [f"DISTURBED: other processes used {others:.0%} of the CPU time, steal {steal:.0%}"]
    return []


def _target(target: float | None) -> str:
    return f">= {target:g}x" if target is not None else "none"


def _summary(summary: list[tuple]) -> None:
    if not summary:
        return
    print("\n### Targets\n")
    print(
        "At the GEMM limit: the ratio an implementation whose whole epoch took no longer than "
        "its GEMMs (timed with numpy's OpenBLAS) would reach; a target above it cannot be met "
        "by faster code around the same GEMMs. The GEMM-limit rows use the limit timed between "
        "deltaprop's rounds.\n"
    )
    print("| config | against | measured | target | at the GEMM limit | verdict |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for key, what, value, target, ceiling in summary:
        unit = "" if what == "GEMM limit" else "x"
        reachable = "" if ceiling is None else f"{ceiling:.2f}{unit}"
        if ceiling is not None and ceiling < target:
            reachable += " (below target)"
        if value is None or isinstance(value, str):  # not measured: absent or not in the run
            measured, verdict = value or "not measured", "not judged"
        else:
            measured, verdict = f"{value:.2f}{unit}", _verdict(value, target)
        print(f"| {key} | {what} | {measured} | {target:g}{unit} | {reachable} | {verdict} |")
    passed = sum(1 for _, _, v, t, _ in summary if isinstance(v, float) and v >= t)
    print(f"\n{passed} of {len(summary)} targets met.")


# ------------------------------------------------------------------------------- memory, accuracy
def memory_table(measurements: list[dict]) -> None:
    """Print memory.py's measurements (dicts with a "config" key), one row each."""
    print(
        "| config | rows | data | baseline RSS | peak increase | of which OpenBLAS buffers "
        "| budget: params + optimizer state + one batch's workspace | within "
        "| divergence snapshot + row order | rest over the budget |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for m in sorted(measurements, key=lambda m: m["config"]):
        parts = m["budget_parts"]
        excess = (m["peak_increase_bytes"] - parts["total"]) / MiB
        within = "yes" if m["within_budget"] else f"NO, by {excess:.2f} MiB"
        blas = m.get("openblas_buffer_bytes", NAN)
        extras = m.get("known_extra_bytes", {})
        snapshot, order = extras.get("divergence_snapshot", NAN), extras.get("row_order", NAN)
        rest = (m["peak_increase_bytes"] - blas - snapshot - order - parts["total"]) / MiB
        print(
            f"| {m['config']} | {m['rows']:,} | {m['data_bytes'] / MiB:.1f} MiB "
            f"| {m['baseline_bytes'] / MiB:.1f} MiB | {m['peak_increase_bytes'] / MiB:.2f} MiB "
            f"| {blas / MiB:.2f} MiB "
            f"| {parts['total'] / MiB:.2f} MiB ({parts['parameters'] / MiB:.2f} + "
            f"{parts['optimizer_state'] / MiB:.2f} + {parts['batch_workspace'] / MiB:.2f}) "
            f"| {within} | {snapshot / MiB:.2f} + {order / MiB:.2f} MiB | {rest:+.2f} MiB |"
        )
    print(
        "\nrest over the budget = peak increase - OpenBLAS buffers - snapshot - row order - "
        "budget (negative: within the budget once those are set apart)"
    )


def _memory(benches: list[dict]) -> None:
    if not benches:
        return
    print("\n### Peak memory of one deltaprop training epoch (fresh process per configuration)\n")
    memory_table([bench["extra_info"] for bench in benches])


def _time_to_accuracy(benches: list[dict]) -> None:
    if not benches:
        return
    extra = benches[0]["extra_info"]
    runs = extra.get("runs", {})
    if not runs:
        return
    first = next(iter(runs.values()))
    print(
        f"\n### Time to {first['target']:.0%} test accuracy: C's setting on Fashion-MNIST "
        f"(momentum {first['momentum']}, lr {first['lr']}, batch {first['batch_size']}), "
        "same initial weights and row orders\n"
    )
    time_to_accuracy_table(runs)


def time_to_accuracy_table(runs: dict[str, dict]) -> None:
    """Print time_to_accuracy.py's runs (implementation -> run), one row each."""
    print("| implementation | epochs | training time | accuracy after each epoch |")
    print("| --- | ---: | ---: | --- |")
    for implementation in ("deltaprop", "torch"):
        if implementation not in runs:
            print(f"| {PEER_LABELS[implementation]} | absent (not installed) | | |")
            continue
        r = runs[implementation]
        reached = r["reached"]
        epochs = str(reached["epochs"]) if reached else f"not reached in {len(r['accuracy'])}"
        seconds = f"{reached['seconds']:.2f} s" if reached else f"({r['training_seconds']:.2f} s)"
        curve = " ".join(f"{a:.3f}" for a in r["accuracy"])
        print(f"| {PEER_LABELS[implementation]} | {epochs} | {seconds} | {curve} |")
    if all(runs.get(i, {}).get("reached") for i in ("deltaprop", "torch")):
        ratio = runs["torch"]["reached"]["seconds"] / runs["deltaprop"]["reached"]["seconds"]
        print(f"\nPyTorch's time / deltaprop's: {_ratio(ratio)}")


# ------------------------------------------------------------------------------- test_bench_core
def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def _core_implementation(name: str) -> str:
    # test_<kind>_<implementation>[<config>]
    return name.split("[", 1)[0].rsplit("_", 1)[1]


def _micro(benches: list[dict]) -> None:
    """test_bench_core.py: one gradient and one 10,000-row epoch of two configurations."""
    if not benches:
        return
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in benches:
        groups[bench["group"]][_core_implementation(bench["name"])] = bench
    print("\n### Micro-benchmarks (test_bench_core.py, random Fashion-MNIST-shaped data)\n")
    print("| group | implementation | median | full-size median | samples/s | time / deltaprop |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for group in sorted(groups):
        members = groups[group]

        def full_median(bench: dict) -> float:
            return bench["extra_info"].get("extrapolated_median_s", bench["stats"]["median"])

        base = full_median(members["deltaprop"]) if "deltaprop" in members else None
        for implementation in ("deltaprop", "numpy", "reference"):
            if implementation not in members:
                continue
            bench = members[implementation]
            info = bench["extra_info"]
            full = full_median(bench)
            extrapolated = " (extrapolated)" if info.get("extrapolated") else ""
            ratio = _ratio(full / base) if base else "-"
            print(
                f"| {group} | {implementation} | {_seconds(bench['stats']['median'])} "
                f"({info['rows_timed']} rows) | {_seconds(full)}{extrapolated} "
                f"| {info.get('samples_per_s', float('nan')):,.0f} | {ratio} |"
            )


def main(path: str) -> None:
    with open(path) as file:
        run = json.load(file)
    configs: dict[str, dict[str, dict]] = defaultdict(dict)
    memory, accuracy, micro = [], [], []
    for bench in run["benchmarks"]:
        info, group = bench["extra_info"], bench["group"] or ""
        if group == "memory":
            memory.append(bench)
        elif group == "time-to-accuracy":
            accuracy.append(bench)
        elif group == "consistency":
            continue
        elif "config" in info and "implementation" in info:
            configs[info["config"]][info["implementation"]] = bench
        else:
            micro.append(bench)
    machine = run["machine_info"]
    print(
        f"## deltaprop benchmarks: {machine.get('cpu', {}).get('brand_raw', '?')}, "
        f"{machine.get('cpu', {}).get('count', '?')} CPUs, Python {machine.get('python_version')}, "
        f"{run['datetime']}"
    )
    builds = {
        b["extra_info"][key]
        for b in run["benchmarks"]
        for key in ("core_loaded", "core_installed")
        if key in b["extra_info"]
    }
    if len(builds) > 1:
        print(
            f"\nWARNING: deltaprop's compiled core changed during the run ({len(builds)} builds: "
            f"{', '.join(sorted(builds))}); the figures mix them. Re-run."
        )
    elif builds:
        print(f"\ndeltaprop core build {builds.pop()} (sha256 of _core, first 12 digits).")
    checks = [b for b in run["benchmarks"] if b["group"] == "consistency"]
    if checks:
        print(
            f"\n{len(checks)} consistency checks ran (peers and deltaprop end three mini-batches "
            "from the same weights with the same parameters)."
        )
    _summary(_comparison(configs))
    _memory(memory)
    _time_to_accuracy(accuracy)
    _micro(micro)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/report.py BENCHMARK_JSON")
    main(sys.argv[1])
