"""A data-parallel training job for tests/test_distributed.py, run under mpiexec.

    mpiexec -n RANKS python tests/mpi_job.py SPEC.json OUT_DIR

SPEC.json holds {"runs": [run, ...]}; each run is `fit`'s keyword arguments plus the
job's own keys (see `JOB_KEYS`). Each rank trains every run and writes OUT_DIR/rank<r>.pkl:
a list with, per run, its parameters, history and error (type name and message), and
OUT_DIR/rank<r>.pid when it starts. The data and the network come from `data` and
`network`, which the tests call too, so that one process can train the same run.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import deltaprop as dp

SIZES = [5, 7, 3]
# The job's keys of a run; every other key is an argument of fit.
JOB_KEYS = {
    "n", "dtype", "sizes", "shards", "sample_weight", "nan_on_rank", "huge_on_rank",
    "raise_on_rank", "stop_on_rank", "sleep", "threads", "save", "on_rank", "activation",
    "memmap", "pretrain", "narrow_on_rank", "short_y_on_rank", "fewer_rows_on_rank",
    "cost", "hyperparameters", "rank_metric", "matmul_precision", "balanced_weights", "zeros",
}  # fmt: skip


def data(run: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The run's full data set: X, class labels and optional sample weights."""
    rng = np.random.default_rng(1234)
    sizes = run.get("sizes", SIZES)
    n = run.get("n", 97)
    X = rng.normal(size=(n, sizes[0])).astype(run.get("dtype", "float64"))
    y = rng.integers(0, sizes[-1], n)
    weights = rng.uniform(0.2, 2.0, n) if run.get("sample_weight") else None
    if run.get("balanced_weights"):  # class_weight="balanced" of all the rows, written out
        weights = n / (sizes[-1] * np.bincount(y, minlength=sizes[-1]).astype(np.float64))[y]
    if run.get("zeros"):  # 70% of X zero, as a CSR matrix ("csr") or dense ("dense")
        X[np.random.default_rng(99).random(X.shape) < 0.7] = 0
        if run["zeros"] == "csr":
            import scipy.sparse

            X = scipy.sparse.csr_matrix(X)
    return X, y, weights


def network(run: dict, seed: int) -> dp.Network:
    """The run's network, initialised from `seed`."""
    return dp.Network(
        run.get("sizes", SIZES), activation=run.get("activation", "tanh"), output="softmax",
        cost=run.get("cost", "log_likelihood"), dtype=run.get("dtype", "float64"), seed=seed,
        matmul_precision=run.get("matmul_precision", "highest"),
    )  # fmt: skip


def pretrain(net: dp.Network, run: dict, seed: int) -> None:
    """One epoch of Adam alone, rows in the order of `seed`: optimizer state to carry on."""
    if run.get("pretrain"):
        X, y, _ = data(run)
        with warnings.catch_warnings():  # each rank pretrains alone on purpose
            warnings.filterwarnings("ignore", "fit: runs under an MPI launcher")
            net.fit(X, y, epochs=1, optimizer="adam", lr=0.01, seed=seed)


def fit_arguments(run: dict) -> dict:
    """`fit`'s keyword arguments of a run (without comm)."""
    return {key: value for key, value in run.items() if key not in JOB_KEYS}


def _local_data(run: dict, rank: int):
    X, y, weights = data(run)
    if run.get("shards"):
        part = slice(run["shards"][rank], run["shards"][rank + 1])
        X, y = X[part], y[part]
        weights = None if weights is None else weights[part]
    if run.get("memmap"):  # the same rows, read from an .npy file
        return np.load(run["memmap"], mmap_mode="r"), y, weights
    X = X.copy()
    if run.get("zeros") == "csr":
        return X, y, weights
    if run.get("narrow_on_rank") == rank:
        X = X[:, :-1]
    if run.get("short_y_on_rank") == rank:
        y = y[:-1]
    if run.get("fewer_rows_on_rank") == rank:
        X, y = X[:-1], y[:-1]
    if run.get("nan_on_rank") == rank:
        X[len(X) // 2, 0] = np.nan
    if run.get("huge_on_rank") == rank:
        X[len(X) // 2 :] = 1e300 if X.dtype == np.float64 else 1e38
    return X, y, weights


def _callbacks(run: dict, rank: int, out: Path) -> list:
    def mark_progress(epoch: int, metrics: dict) -> bool:
        (out / f"rank{rank}.epoch").write_text(str(epoch))
        time.sleep(run.get("sleep", 0.0))
        if run.get("raise_on_rank") == rank and epoch == 1:
            raise RuntimeError(f"callback failed on rank {rank}")
        return run.get("stop_on_rank") == rank and epoch == 1

    return [mark_progress]


def train(run: dict, comm, out: Path) -> dict:
    """Train one run on this rank; return its parameters, history and error."""
    rank = comm.Get_rank()
    run = {**run, **run.get("on_rank", {}).get(str(rank), {})}  # a rank's own arguments
    if "threads" in run:
        dp.set_num_threads(run["threads"])
    X, y, weights = _local_data(run, rank)
    net = network(run, seed=100 + rank)  # rank 0's parameters must win
    pretrain(net, run, seed=rank)  # and so must rank 0's optimizer state
    result = {"error": None}
    arguments = fit_arguments(run)
    if "hyperparameters" in run:  # an optimizer object with these hyper-parameters
        arguments["optimizer"] = dp.optim.get(run["optimizer"], **run["hyperparameters"])
    if run.get("rank_metric"):  # a metric of rank-local state
        arguments["metrics"] = {"rank": lambda net, metrics: float(rank)}
    try:
        net.fit(X, y, sample_weight=weights, comm=comm, callbacks=_callbacks(run, rank, out),
                **arguments)  # fmt: skip
    except (Exception, KeyboardInterrupt) as error:
        result["error"] = (type(error).__name__, str(error))
    result.update(params=net.params.copy(), history=net.history)
    result.update(input_mean=net.input_mean, input_scale=net.input_scale)
    if run.get("save"):
        net.save(run["save"])
    return result


def main() -> None:
    from mpi4py import MPI

    spec, out = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    (out / f"rank{rank}.pid").write_text(str(os.getpid()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    results = [train(run, comm, out) for run in spec["runs"]]
    with open(out / f"rank{rank}.pkl", "wb") as file:
        pickle.dump(results, file)


if __name__ == "__main__":
    main()
