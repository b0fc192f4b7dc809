"""The speed page's figures, drawn when the site is built from the benchmarks' own CSV.

``python bench/report.py RUN.json --csv bench/results/speed.csv`` writes the samples/s of every
implementation in configurations A-E and their bfloat16 rows; this extension reads that file
and draws, per configuration, deltaprop's speed over each peer's (PyTorch, scikit-learn, NumPy)
and deltaprop's fraction of the GEMM limit, into ``docs/_generated/`` (not kept in git), which
``guide/speed.md`` shows. Copying a new run's CSV over the old one redraws the figures.

Standalone: ``python docs/_ext/bench_figures.py [CSV] [OUT_DIR]``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DOCS = Path(__file__).resolve().parents[1]
SPEED_CSV = DOCS.parent / "bench" / "results" / "speed.csv"
OUT_DIR = DOCS / "_generated"
PEERS = {"torch": "PyTorch", "sklearn": "scikit-learn", "numpy": "NumPy"}
COLORS = {"torch": "#ee4c2c", "sklearn": "#3499cd", "numpy": "#4d77cf"}
TIMES = "\N{MULTIPLICATION SIGN}"
HATCHES = {"torch": "", "sklearn": "//", "numpy": ".."}


def read_speeds(path: Path) -> dict[str, dict]:
    """Read the CSV: config -> {"rows": implementation -> row, "label": x-axis label}.

    Of a figure measured in several runs, the latest run's row counts (the CSV's datetime).
    """
    configs: dict[str, dict] = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            config = configs.setdefault(row["config"], {"rows": {}})
            earlier = config["rows"].get(row["implementation"])
            if earlier is None or row["datetime"] >= earlier["datetime"]:
                config["rows"][row["implementation"]] = row
            dtype = {"float64": "f64", "float32": "f32"}[row["dtype"]]
            config["label"] = f"{row['config']}\n{row['sizes']}\n{dtype}, batch {row['batch_size']}"
    return configs


def _rate(config: dict, implementation: str) -> float | None:
    row = config["rows"].get(implementation)
    return float(row["samples_per_s"]) if row else None


def _limit(config: dict) -> float | None:
    """Give the limit the report judges against: timed between deltaprop's rounds, else alone."""
    return _rate(config, "gemm-limit-interleaved") or _rate(config, "gemm-limit")


def draw(configs: dict[str, dict], keys: list[str], title: str, path: Path, limit: bool) -> None:
    """Draw deltaprop's samples/s over each peer's (log scale, 1 = as fast) into `path`.

    With `limit`, deltaprop's fraction of the GEMM limit goes beside it.
    """
    peers = [p for p in PEERS if any(_rate(configs[k], p) for k in keys)]
    if limit:
        fig, (speed, right) = plt.subplots(
            1, 2, figsize=(9.6, 3.9), width_ratios=(3, 1.25), layout="constrained"
        )
        draw_limit(right, configs, keys)
    else:
        fig, speed = plt.subplots(figsize=(6.4, 3.9), layout="constrained")
    width = 0.8 / len(peers)
    for i, peer in enumerate(peers):
        for x, key in enumerate(keys):
            ours, theirs = _rate(configs[key], "deltaprop"), _rate(configs[key], peer)
            if not (ours and theirs):
                continue
            ratio, position = ours / theirs, x + (i - (len(peers) - 1) / 2) * width
            speed.bar(
                position, ratio, width, color=COLORS[peer], hatch=HATCHES[peer],
                edgecolor="white", label=PEERS[peer],
            )  # fmt: skip
            label = f"{ratio:.3g}{TIMES}"
            speed.annotate(label, (position, ratio), ha="center", va="bottom", size=7)
    speed.set_yscale("log")
    speed.set_ylim(0.5, None)
    speed.axhline(1, color="0.3", linewidth=0.8)
    speed.set_xticks(range(len(keys)), [configs[k]["label"] for k in keys], size=8)
    speed.set_ylabel("deltaprop's samples/s ÷ the peer's")
    speed.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}{TIMES}"))
    handles, labels = speed.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    speed.legend(unique.values(), unique.keys(), frameon=False, loc="upper right")
    speed.set_title(title, size=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_limit(limit, configs: dict[str, dict], keys: list[str]) -> None:
    """Draw deltaprop's fraction of the GEMM limit, per configuration, on the axes `limit`."""
    fractions = [(_rate(configs[k], "deltaprop") or 0) / (_limit(configs[k]) or float("inf"))
                 for k in keys]  # fmt: skip
    limit.bar([k.split("-")[0] for k in keys], fractions, color="#6c6c6c")
    for x, fraction in enumerate(fractions):
        limit.annotate(f"{fraction:.2f}", (x, fraction), ha="center", va="bottom", size=8)
    limit.set_ylim(0, 1.15)
    limit.axhline(1, color="0.3", linewidth=0.8)
    limit.set_ylabel("deltaprop ÷ GEMM limit")
    limit.set_title("fraction of the GEMM limit", size=10)


def draw_all(csv_path: Path = SPEED_CSV, out_dir: Path = OUT_DIR) -> list[Path]:
    """Draw ``speed-float32.png`` and ``speed-bfloat16.png`` into `out_dir`; return the paths."""
    configs = read_speeds(csv_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The bfloat16 rows without their limit: it is PyTorch's bfloat16 matmul, which a CPU
    # without native bfloat16 emulates far below the float32 products deltaprop's fallback runs.
    figures = {
        "speed-float32.png": (
            [k for k in sorted(configs) if "-" not in k],
            "float32 and float64",
            True,
        ),
        "speed-bfloat16.png": (
            [k for k in sorted(configs) if k.endswith("-bf16")],
            "bfloat16 products (PyTorch under autocast)",
            False,
        ),
    }
    paths = []
    for name, (keys, title, limit) in figures.items():
        if not keys:
            raise ValueError(f"{csv_path}: no configuration for {name}")
        draw(configs, keys, title, out_dir / name, limit)
        paths.append(out_dir / name)
    return paths


def _on_builder_inited(app) -> None:
    draw_all()


def setup(app):
    """Draw the figures before Sphinx reads the pages."""
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    arguments = [Path(a) for a in sys.argv[1:3]]
    print(*draw_all(*arguments), sep="\n")
