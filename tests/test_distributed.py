"""Data-parallel training over MPI (fit(comm=...)): jobs launched with mpiexec from here.

Each job (tests/mpi_job.py) trains runs on every rank; the tests compare every rank's
parameters with one another (bit for bit) and with one process training the same run.
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import deltaprop as dp
from conftest import HAVE_MPI4PY, MPIEXEC, needs_mpi, restore_default_sigint
from deltaprop import _distributed

sys.path.insert(0, str(Path(__file__).parent))
import mpi_job

JOB = Path(mpi_job.__file__)
# One BLAS thread per rank: MPI ranks busy-poll, two cores hold two ranks.
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
TIMEOUT = 180


def _command(ranks: int, runs: list[dict], tmp_path: Path) -> tuple[list[str], Path]:
    spec, out = tmp_path / "spec.json", tmp_path / "out"
    spec.write_text(json.dumps({"runs": runs}))
    out.mkdir(exist_ok=True)
    for stale in out.iterdir():
        stale.unlink()
    return [MPIEXEC, "-n", str(ranks), sys.executable, str(JOB), str(spec), str(out)], out


def launch(ranks: int, runs: list[dict], tmp_path: Path) -> list[list[dict]]:
    """Run the job on `ranks` ranks; per rank, per run: params, history, error."""
    command, out = _command(ranks, runs, tmp_path)
    done = subprocess.run(command, env=ENV, timeout=TIMEOUT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(ranks)]


def one_process(run: dict) -> dp.Network:
    """The run trained by one process, from rank 0's initial parameters."""
    X, y, weights = mpi_job.data(run)
    net = mpi_job.network(run, seed=100)
    mpi_job.pretrain(net, run, seed=0)
    net.fit(X, y, sample_weight=weights, **mpi_job.fit_arguments(run))
    return net


def assert_same_on_every_rank(results: list[list[dict]]) -> None:
    for run in range(len(results[0])):
        first = results[0][run]
        for rank in results[1:]:
            assert rank[run]["error"] == first["error"]
            assert np.array_equal(rank[run]["params"], first["params"])  # bit for bit
            assert rank[run]["history"].keys() == first["history"].keys()
            for key in first["history"]:
                if key != "time":
                    assert rank[run]["history"][key] == first["history"][key], key


def assert_close(net: dp.Network, params: np.ndarray) -> None:
    """float64: every parameter within 1e-10 relative; float32: 1e-4 of its layer's largest."""
    offset = 0
    for W, b in zip(net.weights, net.biases):
        for expected in (W, b):
            actual = params[offset : offset + expected.size].reshape(expected.shape)
            offset += expected.size
            if net.dtype == np.float64:
                np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-14)
            else:
                scale = max(np.abs(W).max(), np.abs(b).max())
                assert np.abs(actual - expected).max() <= 1e-4 * scale


# --------------------------------------------------------------------- every rank, the same data
OPTIMIZER_RUNS = [
    {"optimizer": "sgd", "lr": 0.3},
    {"optimizer": "sgd", "lr": 0.3, "lmbda": 0.5, "l1": 0.05},
    {"optimizer": "momentum", "lr": 0.05, "momentum": 0.9, "lmbda": 0.5},
    {"optimizer": "nesterov", "lr": 0.05, "momentum": 0.9},
    {"optimizer": "adam", "lr": 0.01, "sample_weight": True},
    {"optimizer": "adamw", "lr": 0.01, "lmbda": 0.2},
    {"optimizer": "rprop", "lr": 0.01, "batch_size": 40},
    {"optimizer": "adam", "lr": 0.01, "dropout": 0.3, "validation_fraction": 0.2},
    {"optimizer": "momentum", "lr": 0.05, "momentum": 0.9, "batch_size": None, "shuffle": False},
    {"optimizer": "sgd", "lr": 0.3, "early_stopping": True, "patience": 1, "epochs": 6,
     "train_accuracy": True, "schedule": "step"},
    {"pretrain": True},  # each rank's own Adam state before: rank 0's is broadcast
    {"optimizer": "adam", "lr": 0.01, "sizes": [5, 7, 6, 3], "activation": ["relu", "tanh"]},
]  # fmt: skip


@needs_mpi
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_replicated_data_trains_as_one_process(tmp_path, ranks, dtype):
    """Uneven splits: 97 rows, batches of 10 over 3 ranks (4, 3, 3 rows; the last 2, 2, 3)."""
    common = {"epochs": 3, "batch_size": 10, "dtype": dtype, "n": 97}
    runs = [{**common, **run} for run in OPTIMIZER_RUNS]
    results = launch(ranks, runs, tmp_path)
    assert_same_on_every_rank(results)
    for run, result in zip(runs, results[0]):
        assert result["error"] is None, (run, result["error"])
        net = one_process(run)
        assert_close(net, result["params"])
        assert len(result["history"]["cost"]) == len(net.history["cost"])
        rtol = 1e-9 if dtype == "float64" else 1e-4
        for key in net.history:
            if key != "time":
                np.testing.assert_allclose(result["history"][key], net.history[key], rtol=rtol)


@needs_mpi
def test_bfloat16_products_train_alike_on_every_rank(tmp_path):
    """bfloat16 GEMMs, float32 reductions: the ranks agree bit for bit, and with one process
    to the rounding of bfloat16 operands (each rank's BP4 sums its own rows)."""
    run = {"epochs": 3, "batch_size": 10, "n": 97, "optimizer": "momentum", "lr": 0.05,
           "dtype": "float32", "matmul_precision": "bfloat16"}  # fmt: skip
    results = launch(2, [run], tmp_path)
    assert_same_on_every_rank(results)
    assert results[0][0]["error"] is None
    expected = one_process(run).params
    assert np.abs(results[0][0]["params"] - expected).max() <= 1e-2 * np.abs(expected).max()


@needs_mpi
def test_replicated_data_from_a_memmap_of_an_npy_file(tmp_path):
    run = {"epochs": 3, "batch_size": 10, "n": 97, "optimizer": "adam", "lr": 0.01,
           "dtype": "float32"}  # fmt: skip
    path = tmp_path / "X.npy"
    np.save(path, mpi_job.data(run)[0])
    results = launch(3, [{**run, "memmap": str(path)}], tmp_path)
    assert_same_on_every_rank(results)
    assert_close(one_process(run), results[0][0]["params"])


@needs_mpi
def test_ranks_with_no_rows_of_a_batch_and_a_larger_world_than_the_batch(tmp_path):
    """3 ranks, batches of 2: one rank has no row of each batch."""
    run = {"epochs": 2, "batch_size": 2, "n": 9, "optimizer": "adam", "lr": 0.01, "dropout": 0.2}
    results = launch(3, [run], tmp_path)
    assert_same_on_every_rank(results)
    assert_close(one_process(run), results[0][0]["params"])


# ---------------------------------------------------------------------------------- sharded data
def expected_sharded_training(run: dict) -> dp.Network:
    """The rule of sharded data, stated on its own: at step k of S, rank q gives its rows
    [k n_q // S, (k + 1) n_q // S); one update per step on the mean over those rows."""
    X, y, weights = mpi_job.data(run)
    bounds = run["shards"]
    sizes = np.diff(bounds)
    n, B = int(sizes.sum()), run["batch_size"]
    steps = -(-n // B)
    net = mpi_job.network(run, seed=100)
    net.optimizer = dp.optim.get(run["optimizer"], lr=run["lr"])
    Xc, Yc = net.validate(X, y)
    w = None if weights is None else (weights / weights.max()).astype(net.dtype)
    for _ in range(run["epochs"]):
        for k in range(steps):
            rows = np.concatenate([
                bounds[q] + np.arange(k * sizes[q] // steps, (k + 1) * sizes[q] // steps)
                for q in range(len(sizes))
            ])  # fmt: skip
            wk = None if w is None else np.ascontiguousarray(w[rows])
            net.train_rows(np.ascontiguousarray(Xc[rows]), np.ascontiguousarray(Yc[rows]),
                           sample_weight=wk, batch_size=len(rows))  # fmt: skip
    return net


@needs_mpi
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_sharded_data_gives_the_exact_mean_over_each_global_batch(tmp_path, optimizer):
    """Shards of 0, 40 and 57 rows, with sample weights: unequal contributions weigh right."""
    run = {"epochs": 3, "batch_size": 10, "n": 97, "shards": [0, 0, 40, 97], "sharded": True,
           "shuffle": False, "optimizer": optimizer, "lr": 0.02, "sample_weight": True}  # fmt: skip
    results = launch(3, [run], tmp_path)
    assert_same_on_every_rank(results)
    assert results[0][0]["error"] is None
    assert_close(expected_sharded_training(run), results[0][0]["params"])


# CSR X on 3 ranks (an empty shard too) and on 2: each rank's run, and its shards.
_ADAM_ON_THREE = {"epochs": 2, "batch_size": 10, "n": 97, "optimizer": "adam", "lr": 0.02,
                  "sample_weight": True, "dropout": 0.2}  # fmt: skip
_ON_TWO = {"epochs": 2, "batch_size": 9, "n": 80, "lr": 0.05}
SPARSE_RUNS = {
    "adam-3-ranks": (3, _ADAM_ON_THREE, [0, 0, 40, 97]),
    "momentum-2-ranks": (2, {**_ON_TWO, "optimizer": "momentum"}, [0, 30, 80]),
    "sgd-l2-2-ranks": (2, {**_ON_TWO, "optimizer": "sgd", "lmbda": 0.5}, [0, 30, 80]),
}


@needs_mpi
@pytest.mark.parametrize("n_ranks, common, shards", SPARSE_RUNS.values(), ids=SPARSE_RUNS)
def test_sparse_rows_train_and_shard_as_dense_rows(n_ranks, common, shards, tmp_path):
    """CSR X: replicated as one process; sharded (shuffled) as the dense shards. The ranks
    keep W^1 as it is (a shard may be dense), momentum summing its whole velocity."""
    sharded = {**common, "shards": shards, "sharded": True}
    runs = [{**common, "zeros": "csr"}, {**sharded, "zeros": "csr"}, {**sharded, "zeros": "dense"}]
    results = launch(n_ranks, runs, tmp_path)
    assert_same_on_every_rank(results)
    replicated, sparse_shards, dense_shards = results[0]
    assert [result["error"] for result in results[0]] == [None] * 3
    assert_close(one_process({**common, "zeros": "dense"}), replicated["params"])
    np.testing.assert_allclose(sparse_shards["params"], dense_shards["params"], rtol=1e-10)
    assert sparse_shards["history"]["cost"] == pytest.approx(
        dense_shards["history"]["cost"], rel=1e-10
    )


@needs_mpi
def test_sharded_data_with_shuffling_and_validation_trains_one_model(tmp_path):
    run = {"epochs": 4, "batch_size": 16, "n": 300, "shards": [0, 100, 300], "sharded": True,
           "optimizer": "adam", "lr": 0.02, "validation_fraction": 0.2, "dropout": 0.1}  # fmt: skip
    results = launch(2, [run], tmp_path)
    assert_same_on_every_rank(results)
    history = results[0][0]["history"]
    assert results[0][0]["error"] is None and len(history["val_cost"]) == 4
    assert history["cost"][-1] < history["cost"][0]


@needs_mpi
def test_balanced_class_weights_of_shards_count_the_rows_of_every_rank(tmp_path):
    """Shards of 30 and 67 rows, with other class proportions each: their "balanced" weights
    are those of all 97 rows (summed counts), not of each shard's; replicated data's are
    one process's."""
    sharded = {"epochs": 3, "batch_size": 10, "n": 97, "shards": [0, 30, 97], "sharded": True,
               "optimizer": "adam", "lr": 0.02}  # fmt: skip
    replicated = {"epochs": 3, "batch_size": 10, "optimizer": "adam", "lr": 0.02,
                  "class_weight": "balanced"}  # fmt: skip
    runs = [{**sharded, "class_weight": "balanced"}, {**sharded, "balanced_weights": True}]
    results = launch(2, [*runs, replicated], tmp_path)
    assert_same_on_every_rank(results)
    weighed, written_out, replicated_result = results[0]
    assert weighed["error"] is None and replicated_result["error"] is None
    assert np.array_equal(weighed["params"], written_out["params"])
    assert_close(one_process(replicated), replicated_result["params"])
    y = mpi_job.data(sharded)[1]
    assert not np.array_equal(np.bincount(y[:30]) / 30, np.bincount(y) / 97)  # shards differ


def test_sharded_shares_use_every_row_once():
    sizes = np.array([0, 7, 40, 53], dtype=np.int64)
    steps = -(-int(sizes.sum()) // 10)
    for rank, n_rows in enumerate(sizes):
        shares = _distributed.sharded_shares(sizes, steps, range(steps), rank)
        used = np.concatenate([np.arange(b, e) for b, e in zip(shares[0], shares[1])])
        assert np.array_equal(used, np.arange(n_rows))
    positions = [_distributed.sharded_shares(sizes, steps, range(steps), r) for r in range(4)]
    batch_sizes = sum(p[1] - p[0] for p in positions)
    assert batch_sizes.sum() == sizes.sum() and batch_sizes.max() - batch_sizes.min() <= 4
    assert np.array_equal(positions[3][2], positions[2][2] + positions[2][1] - positions[2][0])


def test_replicated_shares_cover_each_batch_once():
    n, B, size = 23, 5, 3
    shares = [_distributed.replicated_shares(n, B, range(1, 5), r, size) for r in range(size)]
    for k, b in enumerate(range(1, 5)):
        rows = np.concatenate([np.arange(s[0, k], s[1, k]) for s in shares])
        assert np.array_equal(rows, np.arange(b * B, min(n, (b + 1) * B)))
        assert [s[2, k] for s in shares] == [s[0, k] - b * B for s in shares]


# ------------------------------------------------------------------------------------- faults
@needs_mpi
def test_bad_input_on_one_rank_raises_the_same_error_on_every_rank(tmp_path):
    runs = [
        {"epochs": 2, "nan_on_rank": 1},
        {"epochs": 2, "on_rank": {"2": {"epochs": 3}}},
        {"epochs": 2, "on_rank": {"0": {"lr": -1.0}}},
        {"epochs": 2, "narrow_on_rank": 2},
        {"epochs": 2, "short_y_on_rank": 1},
        {"epochs": 2, "fewer_rows_on_rank": 1},
    ]
    results = launch(3, runs, tmp_path)
    for run in range(len(runs)):
        errors = {rank[run]["error"] for rank in results}
        assert len(errors) == 1, errors
        ((kind, message),) = errors
        assert kind == "ValueError"
        assert "rank" in message
    assert "rank 1: X" in results[0][0]["error"][1]
    assert "epochs" in results[0][1]["error"][1]
    assert results[0][2]["error"][1].startswith("rank 0: lr")
    assert results[0][3]["error"][1].startswith("rank 2: X: expected shape (n_samples, 5)")
    assert results[0][4]["error"][1].startswith("rank 1: Y")
    assert "rank 1 has" in results[0][5]["error"][1] and "n_samples" in results[0][5]["error"][1]
    for rank, per_rank in enumerate(results):  # nothing trained: each keeps its own start
        start = mpi_job.network({}, seed=100 + rank).params
        assert all(np.array_equal(result["params"], start) for result in per_rank)


@needs_mpi
def test_divergence_on_one_rank_stops_every_rank_with_the_same_parameters(tmp_path):
    run = {"epochs": 3, "batch_size": 10, "n": 97, "shards": [0, 50, 97], "sharded": True,
           "huge_on_rank": 1, "activation": "relu", "optimizer": "sgd", "lr": 0.1}  # fmt: skip
    results = launch(2, [run], tmp_path)
    assert_same_on_every_rank(results)
    kind, message = results[0][0]["error"]
    assert kind == "DivergenceError" and "epoch 0" in message
    assert np.isfinite(results[0][0]["params"]).all()


@needs_mpi
def test_a_callback_error_or_stop_on_one_rank_ends_every_rank_after_the_same_epoch(tmp_path):
    runs = [{"epochs": 4, "raise_on_rank": 0}, {"epochs": 4, "stop_on_rank": 0}]
    results = launch(2, runs, tmp_path)
    assert_same_on_every_rank(results)
    assert results[1][0]["error"] == ("RuntimeError", "rank 0: callback failed on rank 0")
    assert len(results[1][0]["history"]["cost"]) == 2
    assert results[1][1]["error"] is None and len(results[1][1]["history"]["cost"]) == 2


def _popen(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=restore_default_sigint,
    )


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


LONG_RUN = {"epochs": 40, "batch_size": 32, "n": 20_000, "sizes": [20, 64, 64, 5],
            "optimizer": "momentum", "lr": 0.01, "momentum": 0.9}  # fmt: skip


@needs_mpi
def test_ctrl_c_stops_every_rank_after_the_same_batch(tmp_path):
    command, out = _command(2, [LONG_RUN], tmp_path)
    process = _popen(command)
    try:
        _wait_for(out / "rank1.epoch", process)
        process.send_signal(signal.SIGINT)  # mpiexec forwards it to every rank
        process.communicate(timeout=60)
    finally:
        process.kill()
    results = [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    assert_same_on_every_rank(results)
    assert results[0][0]["error"][0] == "KeyboardInterrupt"
    assert 1 <= len(results[0][0]["history"]["cost"]) < LONG_RUN["epochs"]


@needs_mpi
def test_a_killed_rank_ends_the_job_and_resume_gives_the_uninterrupted_result(tmp_path):
    checkpoint = tmp_path / "run.ckpt.npz"
    run = {**LONG_RUN, "epochs": 12, "checkpoint": str(checkpoint), "resume": True}
    command, out = _command(2, [run], tmp_path)
    process = _popen(command)
    try:
        _wait_for(checkpoint, process)
        killed = time.monotonic()
        os.kill(int((out / "rank1.pid").read_text()), signal.SIGKILL)
        process.communicate(timeout=60)
        assert time.monotonic() - killed < 60
        assert process.returncode != 0
    finally:
        process.kill()
    assert not (out / "rank0.pkl").exists()  # the job ended before its end
    resumed = launch(2, [run], tmp_path)[0][0]
    uninterrupted = launch(2, [{**run, "checkpoint": str(tmp_path / "other.npz")}], tmp_path)
    assert resumed["error"] is None
    assert np.array_equal(resumed["params"], uninterrupted[0][0]["params"])


# ------------------------------------------------------------------------------- files and output
@needs_mpi
def test_save_on_every_rank_writes_the_file_once(tmp_path):
    path = tmp_path / "model.npz"
    results = launch(3, [{"epochs": 1, "save": str(path)}], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "out", "spec.json"]
    assert np.array_equal(dp.load(path).params, results[2][0]["params"])


# ------------------------------------------------------------- ranks that disagree
# A fit option, optimizer hyper-parameter or part of the architecture that one rank sets
# differently, and the field the error names.
DISAGREEMENTS = [
    ({}, {"epochs": 3}, "epochs"),
    ({}, {"batch_size": 5}, "batch_size"),
    ({}, {"optimizer": "adam"}, "optimizer.class"),
    ({}, {"lr": 0.2}, "optimizer.lr"),
    ({"optimizer": "momentum"}, {"momentum": 0.5}, "optimizer.momentum"),
    ({"optimizer": "nesterov"}, {"momentum": 0.5}, "optimizer.momentum"),
    ({}, {"lmbda": 0.1}, "lmbda"),
    ({}, {"l1": 0.1}, "l1"),
    ({}, {"dropout": 0.1}, "dropout"),
    ({}, {"schedule": "step"}, "schedule"),
    ({}, {"validation_fraction": 0.2}, "validation_data"),
    ({"validation_fraction": 0.2}, {"early_stopping": True}, "early_stopping"),
    ({"early_stopping": True}, {"patience": 3}, "early_stopping.patience"),
    ({"early_stopping": True}, {"min_delta": 0.1}, "early_stopping.min_delta"),
    ({"early_stopping": True}, {"restore_best_weights": False}, "early_stopping.restore_best"),
    ({}, {"train_accuracy": True}, "train_accuracy"),
    ({}, {"shuffle": False}, "shuffle"),
    ({"checkpoint": "{tmp}/a.npz"}, {"checkpoint_every": 2}, "checkpoint_every"),
    ({"checkpoint": "{tmp}/b.npz"}, {"resume": True}, "resume"),
    ({}, {"sharded": True}, "sharded"),
    ({}, {"class_weight": "balanced"}, "class_weight"),
    ({"sharded": True}, {"class_weight": "balanced"}, "class_weight"),
    ({"class_weight": "balanced"}, {"sharded": True}, "sharded"),
    ({"sharded": True, "class_weight": "balanced"}, {"sizes": [5, 9, 4]}, "architecture.sizes"),
    ({"optimizer": "adam", "hyperparameters": {}}, {"hyperparameters": {"betas": [0.8, 0.99]}},
     "optimizer.betas"),
    ({"optimizer": "adam", "hyperparameters": {}}, {"hyperparameters": {"eps": 1e-6}},
     "optimizer.eps"),
    ({"optimizer": "adamw", "hyperparameters": {}},
     {"hyperparameters": {"weight_decay": 0.1}}, "optimizer.weight_decay"),
    ({"optimizer": "rprop", "hyperparameters": {}},
     {"hyperparameters": {"etas": [0.4, 1.2]}}, "optimizer.etas"),
    ({"optimizer": "rprop", "hyperparameters": {}},
     {"hyperparameters": {"step_sizes": [1e-5, 10.0]}}, "optimizer.step_sizes"),
    ({}, {"activation": "relu"}, "architecture.activation"),
    ({"sizes": [5, 7, 6, 3], "activation": ["relu", "tanh"]}, {"activation": ["tanh", "relu"]},
     "architecture.activation"),
    ({}, {"cost": "quadratic"}, "architecture.cost"),
    ({}, {"sizes": [5, 9, 3]}, "architecture.sizes"),
    ({}, {"dtype": "float32"}, "architecture.dtype"),
    ({"dtype": "float32"}, {"matmul_precision": "bfloat16"}, "architecture.matmul_precision"),
    ({"optimizer": "lbfgs", "batch_size": None}, {"max_fun": 10}, "max_fun"),
    ({"optimizer": "lbfgs", "batch_size": None}, {"tol": 1e-3}, "tol"),
]  # fmt: skip


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_any_disagreement_is_one_value_error_on_every_rank_naming_it(tmp_path, ranks):
    last = str(ranks - 1)
    runs = []
    for common, differing, _ in DISAGREEMENTS:
        common = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in common.items()}
        runs.append({"epochs": 2, **common, "on_rank": {last: differing}})
    # A checkpoint on rank 0 only (only rank 0 writes one) is refused too.
    runs.append({"epochs": 2, "on_rank": {"0": {"checkpoint": str(tmp_path / "c.npz")}}})
    fields = [field for _, _, field in DISAGREEMENTS] + ["checkpoint"]
    results = launch(ranks, runs, tmp_path)
    for run, field in enumerate(fields):
        errors = {rank[run]["error"] for rank in results}
        assert len(errors) == 1, (field, errors)
        ((kind, message),) = errors
        assert kind == "ValueError", (field, message)
        assert f"fit's arguments: {field}" in message and " has " in message, (field, message)
    for rank, per_rank in enumerate(results):  # nothing trained: each keeps its own start
        for run, result in enumerate(per_rank):
            own_network = {"sizes", "dtype"} & runs[run]["on_rank"].get(str(rank), {}).keys()
            if not own_network:
                start = mpi_job.network(runs[run], seed=100 + rank).params
                assert np.array_equal(result["params"], start), fields[run]
    assert not list(tmp_path.glob("*.npz"))  # no checkpoint written


@needs_mpi
def test_a_rank_local_metric_is_rank_0s_on_every_rank(tmp_path):
    run = {"epochs": 3, "rank_metric": True, "validation_fraction": 0.2,
           "early_stopping": True}  # fmt: skip
    results = launch(3, [run], tmp_path)
    assert_same_on_every_rank(results)
    assert all(result[0]["history"]["rank"] == [0.0, 0.0, 0.0] for result in results)


@needs_mpi
def test_resume_continues_from_rank_0s_checkpoint_on_every_rank(tmp_path):
    """Per-node checkpoint files that differ: every rank continues from rank 0's."""
    paths = [tmp_path / f"node{rank}.npz" for rank in range(2)]
    first = {"epochs": 2, "on_rank": {str(r): {"checkpoint": str(p)} for r, p in enumerate(paths)}}
    launch(2, [first], tmp_path)
    assert paths[0].exists() and not paths[1].exists()
    paths[1].write_bytes(b"not a checkpoint")  # what rank 1 would read if it read its own
    resumed = {**first, "epochs": 4, "resume": True}
    results = launch(2, [resumed], tmp_path)
    assert_same_on_every_rank(results)
    assert results[0][0]["error"] is None, results[0][0]["error"]
    uninterrupted = launch(2, [{"epochs": 4}], tmp_path)
    np.testing.assert_array_equal(results[0][0]["params"], uninterrupted[0][0]["params"])
    assert len(results[1][0]["history"]["cost"]) == 4


# ------------------------------------------------------------------ a forgotten comm
LAUNCHERS = {
    "mpich": {"PMI_SIZE": "2", "PMI_RANK": "0"},
    "open-mpi": {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"},
}


@pytest.mark.parametrize("launcher", LAUNCHERS.values(), ids=LAUNCHERS)
def test_fit_without_comm_under_a_launcher_warns_once_on_rank_0(monkeypatch, launcher):
    from deltaprop import training

    monkeypatch.setattr(training, "_warned_of_launcher", False)
    for name, value in launcher.items():
        monkeypatch.setenv(name, value)
    net, X, y = dp.Network([3, 2], seed=0), np.zeros((4, 3)), np.zeros(4, dtype=int)
    with pytest.warns(RuntimeWarning, match="MPI launcher with 2 processes but without comm"):
        net.fit(X, y, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(X, y, epochs=1)  # once per process


@pytest.mark.parametrize(
    "environment",
    [{"PMI_SIZE": "2", "PMI_RANK": "1"}, {"PMI_SIZE": "1", "PMI_RANK": "0"}, {}],
    ids=["rank-1", "one-process", "no-launcher"],
)
def test_fit_without_comm_is_silent_elsewhere(monkeypatch, environment):
    from deltaprop import training

    monkeypatch.setattr(training, "_warned_of_launcher", False)
    for name in (*training._LAUNCHER_SIZES, *training._LAUNCHER_RANKS):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dp.Network([3, 2], seed=0).fit(np.zeros((4, 3)), np.zeros(4, dtype=int), epochs=1)


@needs_mpi
def test_a_script_that_forgot_comm_is_warned_once_under_mpiexec(tmp_path):
    script = tmp_path / "alone.py"
    script.write_text(
        "import numpy as np, deltaprop as dp\n"
        "dp.Network([3, 2], seed=0).fit(np.zeros((4, 3)), np.zeros(4, dtype=int), epochs=1)\n"
    )
    done = subprocess.run([MPIEXEC, "-n", "3", sys.executable, str(script)], env=ENV,
                          timeout=TIMEOUT, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("MPI launcher with 3 processes but without comm") == 1


def test_sharded_needs_comm_and_comm_needs_mpi4py_communicator():
    net = dp.Network([2, 2])
    with pytest.raises(ValueError, match="sharded"):
        net.fit(np.zeros((4, 2)), np.zeros((4, 2)), sharded=True)
    if HAVE_MPI4PY:
        with pytest.raises(TypeError, match="comm"):
            net.fit(np.zeros((4, 2)), np.zeros((4, 2)), comm=object())


@needs_mpi
def test_the_command_line_trains_on_every_rank_and_rank_0_reports_and_saves(tmp_path):
    model = tmp_path / "model.npz"
    command = [MPIEXEC, "-n", "2", sys.executable, "-m", "deltaprop", "train", "--distributed",
               "--epochs", "2", "--dtype", "float64", "--save", str(model)]  # fmt: skip
    done = subprocess.run(command, env=ENV, timeout=TIMEOUT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("test accuracy") == 1 and done.stdout.count("epoch 2/2") == 1
    one = subprocess.run([sys.executable, "-m", "deltaprop", "train", "--epochs", "2"],
                         env=ENV, timeout=TIMEOUT, capture_output=True, text=True)  # fmt: skip
    assert one.returncode == 0, one.stderr
    accuracy = [line for line in done.stdout.splitlines() if "test accuracy" in line]
    alone = [line for line in one.stdout.splitlines() if "test accuracy" in line]
    assert accuracy[0].split("after")[0] == alone[0].split("after")[0]
    assert dp.load(model).params.shape == (30 * 64 + 30 + 10 * 30 + 10,)


@needs_mpi
def test_a_command_line_error_on_the_ranks_ends_the_job(tmp_path):
    command = [MPIEXEC, "-n", "2", sys.executable, "-m", "deltaprop", "train", "--distributed",
               "--data", str(tmp_path / "missing")]  # fmt: skip
    done = subprocess.run(command, env=ENV, timeout=TIMEOUT, capture_output=True, text=True)
    assert done.returncode != 0 and "--data" in done.stderr


# --------------------------------------------------------------------------------- full batch
@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_lbfgs_runs_the_same_iterations_on_every_rank_as_in_one_process(tmp_path, ranks):
    runs = [
        {"optimizer": "lbfgs", "epochs": 15, "lmbda": 0.5, "l1": 0.01, "batch_size": None},
        {"optimizer": "lbfgs", "epochs": 10, "sample_weight": True, "batch_size": None,
         "validation_fraction": 0.2, "train_accuracy": True},
    ]  # fmt: skip
    results = launch(ranks, runs, tmp_path)
    assert_same_on_every_rank(results)
    for run, result in zip(runs, results[0]):
        assert result["error"] is None, result["error"]
        net = one_process(run)
        assert len(result["history"]["cost"]) == len(net.history["cost"])
        np.testing.assert_allclose(result["history"]["cost"], net.history["cost"], rtol=1e-9)
        # L-BFGS's line search amplifies rounding a little more than SGD does.
        np.testing.assert_allclose(result["params"], net.params, rtol=1e-7, atol=1e-9)


@needs_mpi
def test_lbfgs_on_sharded_data_minimises_the_objective_of_all_rows(tmp_path):
    run = {"optimizer": "lbfgs", "epochs": 200, "lmbda": 1.0, "batch_size": None, "n": 97,
           "shards": [0, 0, 30, 97], "sharded": True, "tol": 1e-9}  # fmt: skip
    results = launch(3, [run], tmp_path)
    assert_same_on_every_rank(results)
    alone = one_process({key: value for key, value in run.items() if key != "sharded"})
    X, y, _ = mpi_job.data(run)
    sharded = mpi_job.network(run, seed=0)
    sharded.params[...] = results[0][0]["params"]
    cost = sharded.objective(X, y, lmbda=1.0)[0]
    assert cost == pytest.approx(alone.objective(X, y, lmbda=1.0)[0], rel=1e-8)


@needs_mpi
def test_standardize_learns_the_scaling_of_every_rank_s_rows(tmp_path):
    from deltaprop._scaling import Scaling

    sharded = {"optimizer": "adam", "lr": 0.01, "epochs": 2, "standardize": True,
               "sample_weight": True, "shards": [0, 0, 30, 97], "sharded": True}  # fmt: skip
    replicated = {key: value for key, value in sharded.items() if key not in ("shards", "sharded")}
    results = launch(3, [sharded, replicated], tmp_path)
    assert_same_on_every_rank(results)
    X, _, weights = mpi_job.data(sharded)
    expected = Scaling.learn(X, weights)
    for index, run in enumerate(results[0]):
        np.testing.assert_allclose(run["input_mean"], expected.mean, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(run["input_scale"], expected.scale, rtol=1e-12)
        for rank in results[1:]:  # every rank the same scaling, bit for bit
            np.testing.assert_array_equal(rank[index]["input_mean"], run["input_mean"])
            np.testing.assert_array_equal(rank[index]["input_scale"], run["input_scale"])
    assert all(run["error"] is None for run in results[0])
    alone = one_process(replicated)  # each rank learns from all rows: the same scaling
    np.testing.assert_array_equal(alone.input_mean, results[0][1]["input_mean"])
    assert_close(alone, results[0][1]["params"])


@needs_mpi
def test_standardize_of_sparse_shards_learns_the_scale_of_every_rank_s_rows(tmp_path):
    """CSR shards: the scale only (mean 0, X stays sparse), summed over the ranks; the
    replicated run trains as one process."""
    from deltaprop._scaling import Scaling

    sharded = {"optimizer": "momentum", "lr": 0.05, "epochs": 2, "standardize": True,
               "zeros": "csr", "sample_weight": True, "shards": [0, 30, 97],
               "sharded": True}  # fmt: skip
    replicated = {key: value for key, value in sharded.items() if key not in ("shards", "sharded")}
    results = launch(2, [sharded, replicated], tmp_path)
    assert_same_on_every_rank(results)
    assert all(run["error"] is None for run in results[0])
    X, _, weights = mpi_job.data(sharded)
    expected = Scaling.learn(X, weights)
    assert not np.array_equal(expected.scale, np.ones_like(expected.scale))
    for run in results[0]:
        assert not np.any(run["input_mean"])
        np.testing.assert_allclose(run["input_scale"], expected.scale, rtol=1e-12)
        np.testing.assert_array_equal(results[1][0]["input_scale"], results[0][0]["input_scale"])
    assert_close(one_process(replicated), results[0][1]["params"])


@needs_mpi
def test_a_lone_error_before_standardize_sums_over_the_ranks_is_every_rank_s(tmp_path):
    common = {"epochs": 2, "standardize": True, "shards": [0, 40, 60, 97], "sharded": True}
    runs = [
        {**common, "short_y_on_rank": 1},  # before the scaling's sums: no rank waits in them
        {**common, "nan_on_rank": 2},  # found by the scaling, after the sums
        {**common, "on_rank": {"1": {"standardize": False}}},
    ]
    results = launch(3, runs, tmp_path)
    for run in range(len(runs)):
        errors = {rank[run]["error"] for rank in results}
        assert len(errors) == 1, errors
        assert next(iter(errors))[0] == "ValueError"
    assert results[0][0]["error"][1].startswith("rank 1: Y")
    assert results[0][1]["error"][1].startswith("rank 2: X: contains NaN")
    assert "standardize: rank 1 has False" in results[0][2]["error"][1]
    assert all(rank[run]["input_mean"] is None for rank in results for run in range(3))


@needs_mpi
def test_the_guide_example_runs_on_two_ranks(tmp_path):
    guide = Path(__file__).resolve().parents[1] / "docs" / "guide" / "distributed.md"
    page = guide.read_text(encoding="utf-8")
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "comm=" in b]
    script = tmp_path / "train.py"
    script.write_text(example)
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], cwd=tmp_path,
                          env=ENV, timeout=TIMEOUT, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    X, y = dp.datasets.load_digits()
    assert dp.load(tmp_path / "model.npz").evaluate(X, y) > 0.9


# ----------------------------------------------------- the core's reduction seam, in one process
def _seam_case(optimizer: str):
    run = {"n": 40, "dtype": "float64"}
    X, y, _ = mpi_job.data(run)
    net = mpi_job.network(run, seed=3)
    net.optimizer = dp.optim.get(optimizer, lr=0.05)
    X, Y = net.validate(X, y)
    return net, X, Y


class _ThreadRanks:
    """Ranks as threads of one process (the core releases the GIL while it trains): each
    reduction sums the ranks' arrays, in rank order, as an allreduce would."""

    def __init__(self, size: int) -> None:
        self.barrier, self.arrays = threading.Barrier(size, timeout=60), [None] * size

    def rank(self, rank: int, bucket_bytes: int) -> _ThreadRank:
        return _ThreadRank(self, rank, bucket_bytes)


class _ThreadRank:
    def __init__(self, ranks: _ThreadRanks, rank: int, bucket_bytes: int) -> None:
        self.ranks, self.rank, self.lead, self.bucket_bytes = ranks, rank, rank == 0, bucket_bytes
        self.statuses_seen = []  # this rank's statuses before each sum
        self.values_seen = []  # this rank's share of each step, before the sum

    def _sum(self, values: np.ndarray) -> None:
        self.ranks.arrays[self.rank] = values.copy()
        self.ranks.barrier.wait()
        values[:] = sum(self.ranks.arrays)
        self.ranks.barrier.wait()

    def reduce_statuses(self, statuses: np.ndarray) -> None:
        self.statuses_seen.append(statuses.copy())
        self._sum(statuses)

    def reduce(self, values: np.ndarray) -> None:
        self.values_seen.append(values.copy())
        self._sum(values)


class _OneRank:
    """The reduction of a single process: sums are the arrays themselves."""

    def __init__(self, lead: bool = True, stop_at: int = 0, fail_at: tuple[str, int] = ("", 0)):
        self.lead, self.stop_at, self.fail_at = lead, stop_at, fail_at
        self.bucket_bytes = 2**20
        self.calls = {"statuses": 0, "values": 0}
        self.values_seen = []

    def _call(self, kind: str) -> None:
        self.calls[kind] += 1
        if self.fail_at == (kind, self.calls[kind]):
            raise ConnectionError("the network went away")

    def reduce_statuses(self, statuses: np.ndarray) -> None:
        self._call("statuses")
        if self.calls["statuses"] == self.stop_at:
            statuses[-1] += 1

    def reduce(self, values: np.ndarray) -> None:
        self._call("values")
        self.values_seen.append(values.copy())


@pytest.mark.parametrize("bucket_bytes", [0, 2**20])  # a bucket per layer; one for all
@pytest.mark.parametrize(
    ("optimizer", "l1"),
    [("sgd", 0.0), ("sgd", 0.01), ("momentum", 0.0), ("nesterov", 0.0), ("adam", 0.0),
     ("rprop", 0.0)],
)  # fmt: skip
def test_two_ranks_in_threads_train_as_one_process(optimizer, l1, bucket_bytes):
    """Each route of the step (into W, into V, into a gradient buffer) summed over two ranks
    that each hold half of every batch: the lead adds the shared state once."""
    alone, X, Y = _seam_case(optimizer)
    order = np.arange(len(X), dtype=np.int64)
    expected = alone.train_rows(X, Y, rows=order, batch_size=8, l2=0.01, l1=l1)
    ranks, results = _ThreadRanks(2), {}

    def train(rank: int) -> None:
        net, _, _ = _seam_case(optimizer)
        reduction = ranks.rank(rank, bucket_bytes)
        shares = _distributed.replicated_shares(len(X), 8, range(5), rank=rank, size=2)
        outcome = net.train_rows(X, Y, rows=order, batch_size=8, l2=0.01, l1=l1,
                                 shares=shares, reduction=reduction)  # fmt: skip
        results[rank] = (outcome, net.params, reduction)

    threads = [threading.Thread(target=train, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (cost, weight, diverged), params, reduction = results[0]
    assert diverged is None and weight == expected[1] == 40
    assert cost == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(params, alone.params, rtol=1e-12, atol=1e-14)
    assert np.array_equal(params, results[1][1])
    # Before each sum, each rank's own half of the batch: 4 rows each.
    assert [s[1] for s in reduction.statuses_seen] == [4.0] * 5
    n_layers = len(alone.sizes) - 1
    assert len(reduction.values_seen) == 5 * (n_layers if bucket_bytes == 0 else 1)
    assert sum(v.size for v in reduction.values_seen) == 5 * alone.params.size


def test_a_reduction_asking_to_stop_ends_the_call_after_that_batch():
    net, X, Y = _seam_case("adam")
    three, _, _ = _seam_case("adam")
    order = np.arange(len(X), dtype=np.int64)
    reduction = _OneRank(stop_at=3)
    shares = _distributed.replicated_shares(len(X), 8, range(5), rank=0, size=1)
    net.train_rows(X, Y, rows=order, batch_size=8, shares=shares, reduction=reduction)
    three.train_rows(X, Y, rows=order[:24], batch_size=8)
    assert reduction.calls == {"statuses": 3, "values": 3} and net.optimizer.step == 3
    np.testing.assert_allclose(net.params, three.params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("kind", ["statuses", "values"])
def test_a_reduction_that_raises_leaves_the_parameters_of_the_call_start(optimizer, kind):
    """A sum half done would leave a destination (W itself, for SGD) that no process shares."""
    net, X, Y = _seam_case(optimizer)
    start = net.params.copy()
    order = np.arange(len(X), dtype=np.int64)
    shares = _distributed.replicated_shares(len(X), 8, range(5), rank=0, size=1)
    with pytest.raises(ConnectionError, match="went away"):
        net.train_rows(X, Y, rows=order, batch_size=8, shares=shares,
                       reduction=_OneRank(fail_at=(kind, 3)))  # fmt: skip
    assert net.optimizer.step == 0
    assert np.array_equal(net.params, start)
    assert not any(np.any(state) for state in net.optimizer.state)


@pytest.mark.parametrize("lead", [False, True])
def test_ranks_without_rows_of_a_batch_contribute_zeros_or_the_shared_state(lead):
    net, X, Y = _seam_case("sgd")
    start = net.params.copy()
    order = np.arange(len(X), dtype=np.int64)
    shares = _distributed.replicated_shares(len(X), 2, range(20), rank=0, size=3)
    assert (shares[1] - shares[0] == 0).all()  # rank 0 of 3 never has a row of 2
    reduction = _OneRank(lead=lead)
    net.train_rows(X, Y, rows=order, batch_size=2, shares=shares, reduction=reduction)
    assert len(reduction.values_seen) == 20
    if lead:  # the weights, decayed by nothing (l2 = 0): the start, as the sums leave them
        assert all(np.array_equal(values, start) for values in reduction.values_seen)
    else:
        assert all(not values.any() for values in reduction.values_seen)


# ------------------------------------------------------------- one process: a group of one
def test_one_process_is_a_group_with_the_interface_of_the_ranks():
    """Alone offers every public method and attribute of Group, with the same signature,
    so that training code never asks which it has."""
    alone, ranks = _distributed.Alone, _distributed.Group
    public = [name for name in dir(ranks) if not name.startswith("_")]
    assert set(public) <= set(dir(alone)), set(public) - set(dir(alone))
    for name in public:
        mine, theirs = getattr(alone, name), getattr(ranks, name)
        if callable(theirs) and not isinstance(theirs, type):
            mine, theirs = inspect.signature(mine), inspect.signature(theirs)
            assert list(mine.parameters) == list(theirs.parameters), name


def test_one_process_agrees_with_itself():
    alone = _distributed.group(None, False)
    error = ZeroDivisionError("its own")
    with pytest.raises(ZeroDivisionError) as raised:
        with alone.agreeing():
            raise error
    assert raised.value is error  # neither rebuilt nor prefixed by a rank
    with pytest.raises(ZeroDivisionError):
        alone.check_stop(False, error)
    assert alone.check_stop(True, None) is True
    alone.check_same("fit's arguments", {"lr": 1})  # nothing to compare with
    assert alone.broadcast_seed(None) is None and alone.broadcast_value([1]) == [1]
    values = np.array([1.0, 2.0], dtype=np.float32)
    assert alone.sum(values).dtype == np.float64 and alone.sum(values).tolist() == [1.0, 2.0]
    assert alone.share(7) == slice(0, 7) and alone.total_rows(7) == 7
    np.testing.assert_array_equal(
        alone.replicated_shares(10, 4, range(3)), [[0, 4, 8], [4, 8, 10], [0, 0, 0]]
    )
    with alone.aborting_on_lone_errors(), pytest.raises(KeyError):
        raise KeyError("passes")
