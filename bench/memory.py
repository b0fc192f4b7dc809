"""Peak memory of one deltaprop training epoch per configuration (A-D), each in a fresh process.

    python bench/memory.py [--rows 60000]

The parent writes the training data, already in the configuration's dtype with one-hot
targets, to .npy files; the child loads them (no conversion, so no transient copies), builds
the network, reads its resident set size (the baseline: data + parameters + interpreter and
libraries), resets the kernel's high-water mark, trains one epoch with ``Network.fit`` and
reads the high-water mark again. Reported apart: OpenBLAS's buffers (the RSS a throw-away
network of the same shapes leaves behind after the gradients of one batch), and what deltaprop
holds beyond the budget by design, the snapshot of parameters and optimizer state that
divergence recovery returns to and the epoch's row order (see known_extras). The increase is
compared with the budget of the issue,
"parameters + optimizer state + workspace for one batch", counted as:

* parameters: P values (weights and biases);
* optimizer state: P per state array (momentum's velocity: one);
* workspace: z, a and delta for every layer l >= 1, 3 B sum(n_l) values; the gathered batch,
  B (n_0 + n_L); and, for an optimizer other than plain SGD, a gradient buffer of P.

The high-water mark comes from /proc/self/status (VmHWM), reset through /proc/self/clear_refs
("5", Linux >= 4.0). ``getrusage(RUSAGE_SELF).ru_maxrss`` is not usable here: a child started by
fork or vfork + exec inherits its parent's peak in ru_maxrss (the kernel keeps the larger of
the two at exec), and the parent holds all the data of the benchmark run.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy as np
from _common import CONFIGS, N_TRAIN, SEED, Config, data, make_network
from report import memory_table

import deltaprop as dp

MiB = 2**20


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1))


def budget(config: Config, n_state: int) -> dict[str, int]:
    """The issue's budget in bytes, by part (see the module docstring)."""
    size = np.dtype(config.dtype).itemsize
    P, B, sizes = config.n_params, config.batch_size, config.sizes
    parts = {
        "parameters": P * size,
        "optimizer_state": n_state * P * size,
        "batch_workspace": (3 * B * sum(sizes[1:]) + B * (sizes[0] + sizes[-1])) * size
        + (P * size if config.optimizer != "sgd" else 0),
    }
    parts["total"] = sum(parts.values())
    return parts


def known_extras(config: Config, n_state: int, rows: int) -> dict[str, int]:
    """What deltaprop holds beyond the budget by design, in bytes: the copy of the parameters
    and optimizer state each core call takes to go back to when training diverges (the
    Reliability issue's DivergenceError), and the epoch's shuffled row order (int64)."""
    size = np.dtype(config.dtype).itemsize
    return {"divergence_snapshot": (1 + n_state) * config.n_params * size, "row_order": 8 * rows}


def _child(config: Config, folder: pathlib.Path) -> dict:
    X = np.load(folder / "X.npy")
    Y = np.load(folder / "Y.npy")
    net = make_network(config)
    momentum = config.momentum if config.optimizer == "momentum" else None
    optimizer = dp.optim.get(config.optimizer, lr=config.lr, momentum=momentum)
    baseline = _status_kib("VmRSS") * 1024
    # OpenBLAS's own memory (per-thread buffers, kept for the process's life), apart: what
    # the RSS keeps after a throw-away network of the same shapes computed the gradients of
    # one batch, every GEMM shape of training, with the same threads.
    warm_up = make_network(config)
    warm_up.gradients(X[: config.batch_size], Y[: config.batch_size])
    del warm_up
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # give back what the throw-away network freed
    openblas_buffers = _status_kib("VmRSS") * 1024 - baseline
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # the high-water mark starts again from the current RSS
    history = net.fit(
        X, Y, epochs=1, batch_size=config.batch_size, optimizer=optimizer, lmbda=config.lmbda,
        seed=SEED,
    )  # fmt: skip
    peak = _status_kib("VmHWM") * 1024
    parts = budget(config, len(optimizer.state))
    return {
        "rows": len(X),
        "data_bytes": X.nbytes + Y.nbytes,
        "baseline_bytes": baseline,
        "peak_bytes": peak,
        "peak_increase_bytes": peak - baseline,
        "openblas_buffer_bytes": openblas_buffers,
        "budget_bytes": parts["total"],
        "budget_parts": parts,
        "known_extra_bytes": known_extras(config, len(optimizer.state), len(X)),
        "within_budget": peak - baseline <= parts["total"],
        "cost": history["cost"][0],
        "blas_threads": dp.get_num_threads(),
    }


def measure(config: Config, rows: int = N_TRAIN, folder: str | os.PathLike | None = None) -> dict:
    """Run the child for `config` on the first `rows` training rows; its measurements."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = pathlib.Path(folder or scratch)
        train = data("train", config.dtype)
        np.save(folder / "X.npy", train.X[:rows])
        np.save(folder / "Y.npy", train.Y[:rows])
        child = subprocess.run(
            [sys.executable, __file__, "--child", config.key, str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"memory child for {config.key} failed:\n{child.stderr}")
        for name in ("X.npy", "Y.npy"):
            (folder / name).unlink()
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=N_TRAIN)
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        key, folder = args.child
        print(json.dumps(_child(CONFIGS[key], pathlib.Path(folder))))
        return
    measurements = [
        {"config": c.key, **measure(c, args.rows)} for c in CONFIGS.values() if not c.predict
    ]
    memory_table(measurements)


if __name__ == "__main__":
    main()
