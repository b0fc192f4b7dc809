"""Peak memory of one deltaprop training epoch per configuration (A-D), each in a fresh process.

    python bench/memory.py [--rows 60000]

The parent saves the training rows, in the configuration's dtype with one-hot targets, to .npy
files; the child loads them (no conversion, no transient copy), builds the network, reads its
resident set size (the baseline), resets the kernel's high-water mark (VmHWM, through
/proc/self/clear_refs), trains one epoch and reads the mark again. ``ru_maxrss`` would not do:
a child inherits its parent's peak, and the parent holds all the data of the benchmark run.

The increase is compared with the budget "parameters + optimizer state + one batch's
workspace": P values of parameters, P per optimizer state array, and as workspace z, a and
delta of every layer (3 B sum(n_l)), the gathered batch (B (n_0 + n_L)) and, for an optimizer
other than SGD, a gradient buffer (P); in bfloat16 products, the bfloat16 copies of the weights,
of each layer's input and of δ. Set apart: OpenBLAS's buffers (the RSS a throw-away
network of the same shapes leaves after the gradients of one batch), and what deltaprop keeps by
design, the snapshot of parameters and optimizer state that divergence recovery returns to and
the epoch's row order.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy as np
from _common import CONFIGS, N_TRAIN, SEED, Config, data, make_network, make_optimizer
from report import memory_table


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        return 1024 * int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1))


def budget(config: Config, n_state: int) -> dict[str, int]:
    """The budget in bytes, by part (see the module docstring)."""
    P, B, sizes = config.n_params, config.batch_size, config.sizes
    gradient = P if config.optimizer != "sgd" else 0
    workspace = 3 * B * sum(sizes[1:]) + B * (sizes[0] + sizes[-1]) + gradient
    size = np.dtype(config.dtype).itemsize
    parts = {"parameters": P, "optimizer_state": n_state * P, "batch_workspace": workspace}
    parts = {part: values * size for part, values in parts.items()}
    if config.precision == "bfloat16":  # 2 bytes each: W^l, the layers' inputs a^(l-1), δ^l
        inputs = B * sum(sizes[:-1])
        parts["bfloat16_copies"] = 2 * (config.n_weights + inputs + B * sum(sizes[1:]))
    return parts | {"total": sum(parts.values())}


def _child(config: Config, folder: pathlib.Path) -> dict:
    X, Y = np.load(folder / "X.npy"), np.load(folder / "Y.npy")
    net, optimizer = make_network(config), make_optimizer(config)
    baseline = _status_bytes("VmRSS")
    # OpenBLAS keeps per-thread buffers for the process's life: every GEMM shape of training,
    # with the same threads, on a throw-away network whose own memory is then given back.
    make_network(config).gradients(X[: config.batch_size], Y[: config.batch_size])
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    openblas_buffers = _status_bytes("VmRSS") - baseline
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # the high-water mark starts again from the current RSS
    history = net.fit(
        X, Y, epochs=1, batch_size=config.batch_size, optimizer=optimizer, lmbda=config.lmbda,
        seed=SEED,
    )  # fmt: skip
    increase, parts = _status_bytes("VmHWM") - baseline, budget(config, len(optimizer.state))
    size = np.dtype(config.dtype).itemsize
    return {
        "rows": len(X),
        "data_bytes": X.nbytes + Y.nbytes,
        "baseline_bytes": baseline,
        "peak_increase_bytes": increase,
        "openblas_buffer_bytes": openblas_buffers,
        "budget_parts": parts,
        "known_extra_bytes": {
            "divergence_snapshot": (1 + len(optimizer.state)) * config.n_params * size,
            "row_order": 8 * len(X),
        },
        "within_budget": increase <= parts["total"],
        "cost": history["cost"][0],
    }


def measure(config: Config, rows: int = N_TRAIN) -> dict:
    """Run the child for `config` on the first `rows` training rows; return its measurements."""
    with tempfile.TemporaryDirectory() as folder:
        train = data("train", config.dtype)
        np.save(f"{folder}/X.npy", train.X[:rows])
        np.save(f"{folder}/Y.npy", train.Y[:rows])
        command = [sys.executable, __file__, "--child", config.key, folder]
        child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"memory child for {config.key} failed:\n{child.stderr}")
    return json.loads(child.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=N_TRAIN)
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(CONFIGS[args.child[0]], pathlib.Path(args.child[1]))))
    else:
        training = [c for c in CONFIGS.values() if not c.predict]
        memory_table([{"config": c.key, **measure(c, args.rows)} for c in training])


if __name__ == "__main__":
    main()
