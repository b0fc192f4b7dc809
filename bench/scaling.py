"""Data-parallel scaling: measured on this machine, and predicted for a cluster.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/scaling.py [--configs A B C D]

Measures, each in a fresh process (this script launches itself, under mpiexec for the ranks):

1. the allreduce between two ranks here: latency alpha and seconds per byte beta of
   t = 2 (p - 1) alpha + 2 (p - 1) / p * bytes * beta (the ring allreduce) for p = 2;
2. for each configuration, one epoch of `fit`: one process with 1 BLAS thread (the compute
   time of one batch), then three rounds alternating one process with 2 BLAS threads and
   `mpiexec -n 2` with 1 BLAS thread per rank (the best epoch of each kind counts); the
   time the ranks spend in fit's reductions, and in the same reductions alone; and two ranks
   that do not communicate, each training half the rows in batches of half the size by
   itself: what two ranks would reach if their reductions cost nothing;
3. the predicted epoch time and efficiency on 1 to 256 ranks: per batch, the compute of one
   process divided among p ranks plus the ring allreduces of a batch (its statuses, then
   its step in buckets of layers: as many numbers as the network has parameters), over 10
   and 100 Gb/s networks (alpha 20 us for TCP over 10 Gb/s Ethernet, 2 us for 100 Gb/s
   InfiniBand with RDMA: typical figures, not measured here).

Prints markdown tables (the "Speed and scaling" tables of docs/guide/distributed.md come
from one run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import CONFIGS, N_TRAIN, SEED, data, make_network, make_optimizer

import deltaprop as dp
from deltaprop._distributed import Group

RANKS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
NETWORKS = {"10 Gb/s": (20e-6, 8 / 10e9), "100 Gb/s": (2e-6, 8 / 100e9)}  # alpha, beta
ROWS = {"A": N_TRAIN, "B": N_TRAIN, "C": N_TRAIN, "D": 10_240}
REPEATS = 3  # epochs per process, the best one counts
ROUNDS = 3  # processes of each kind per configuration, alternating


def _mpiexec() -> str:
    found = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if found is None:
        sys.exit("bench/scaling.py needs mpiexec: pip install '.[mpi]'")
    return found


def _run(command: list[str], threads: int) -> dict:
    """Run a worker; return the JSON its rank 0 prints last."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _worker(arguments: list[str], threads: int, ranks: int = 0) -> dict:
    command = [sys.executable, __file__, "--worker", *arguments, "--threads", str(threads)]
    if ranks:
        command = [_mpiexec(), "-n", str(ranks), *command]
    return _run(command, threads)


# --------------------------------------------------------------------------------- the workers
def _comm(distributed: bool):
    if not distributed:
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _timed(comm):
    """`comm`, adding up the seconds spent in its Allreduce calls in `seconds`: those of
    `fit`, each including the wait for the slowest rank, with the caches as the batch left
    them. (fit wants an mpi4py Intracomm: a subclass of it, on the same communicator.)"""
    from mpi4py import MPI

    class TimedComm(MPI.Intracomm):
        seconds = 0.0

        def Allreduce(self, *args, **kwargs) -> None:  # mpi4py's name
            started = time.perf_counter()
            super().Allreduce(*args, **kwargs)
            self.seconds += time.perf_counter() - started

    return TimedComm(comm)


def _median_seconds(comm, collective, calls: int) -> float:
    samples = []
    for _ in range(7):
        comm.Barrier()
        started = time.perf_counter()
        for _ in range(calls):
            collective()
        samples.append((time.perf_counter() - started) / calls)
    return float(np.median(samples))


def measure_allreduce() -> dict:
    """Median time of an in-place float32 Allreduce, by size (bytes), on every rank; and, at
    the largest size, of the Reduce_scatter and Allgather a ZeRO-1 step would make instead
    (each rank updating its part of the parameters)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    times = {}
    for exponent in range(0, 23, 2):
        buffer = np.ones(2**exponent, np.float32)
        allreduce = lambda b=buffer: comm.Allreduce(MPI.IN_PLACE, b, op=MPI.SUM)  # noqa: E731
        times[buffer.nbytes] = _median_seconds(comm, allreduce, max(5, 2**18 // 2**exponent))
    part = np.empty(buffer.size // comm.Get_size(), np.float32)

    def reduce_scatter_allgather() -> None:
        comm.Reduce_scatter_block(buffer, part, op=MPI.SUM)
        comm.Allgather(MPI.IN_PLACE, buffer)

    zero = _median_seconds(comm, reduce_scatter_allgather, 5)
    return {"allreduce": times, "reduce_scatter_allgather": {buffer.nbytes: zero}}


def measure_epoch(key: str, distributed: bool, independent: bool = False) -> dict:
    """Best of REPEATS epochs of `fit` on configuration `key` (rows of ROWS); independent:
    each of two ranks trains its half of the rows alone, in batches of half the size, and
    an epoch lasts until the slower one ends."""
    config, comm = CONFIGS[key], _comm(distributed or independent)
    train = data("train", config.dtype).first(ROWS[key])
    X, labels = train.X, train.labels
    net = make_network(config)
    options = dict(epochs=1, batch_size=config.batch_size, lmbda=config.lmbda, seed=SEED)
    fit_comm = comm if distributed else None
    if independent:
        rank = comm.Get_rank()
        half = slice(rank * len(X) // 2, (rank + 1) * len(X) // 2)
        X, labels = X[half], labels[half]
        options["batch_size"] //= 2
    net.fit(
        X[:1024], labels[:1024], optimizer=make_optimizer(config), **options, comm=fit_comm
    )  # fmt: skip  (warm-up: threads, workspaces, MPI connections)
    best, reducing = np.inf, 0.0
    for _ in range(REPEATS):
        timed = None if fit_comm is None else _timed(fit_comm)
        if comm is not None:
            comm.Barrier()
        started = time.perf_counter()
        net.fit(X, labels, optimizer=make_optimizer(config), **options, comm=timed)
        seconds = time.perf_counter() - started
        if independent:
            seconds = comm.allreduce(seconds, op=max)
        if seconds < best:
            best, reducing = seconds, 0.0 if timed is None else timed.seconds
    batches = -(-len(train.X) // config.batch_size)
    result = {"seconds": best, "rows": len(train.X), "batches": batches}
    if distributed:
        result["reduce_seconds_in_fit"] = reducing
        result["reduce_seconds"] = _reductions_alone(comm, config, batches)
    return result


def buckets(config) -> list[int]:
    """Parameters of each bucket of the step fit sums per batch: layers from the top down
    until they reach Group.bucket_bytes, or the input layer."""
    sizes, counts, pending = config.sizes, [], 0
    for n_in, n_out in reversed(list(zip(sizes[:-1], sizes[1:]))):
        pending += (n_in + 1) * n_out
        if pending * np.dtype(config.dtype).itemsize >= Group.bucket_bytes:
            counts, pending = counts + [pending], 0
    return counts + [pending] if pending else counts


def _reductions_alone(comm, config, batches: int) -> float:
    """Seconds of an epoch's per-batch reductions alone (the arrays fit sums)."""
    from mpi4py import MPI

    arrays = [np.zeros(n, config.dtype) for n in [dp._core.REDUCTION_TAIL, *buckets(config)]]
    best = np.inf
    for _ in range(REPEATS):
        comm.Barrier()
        started = time.perf_counter()
        for _ in range(batches):
            for array in arrays:
                comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        best = min(best, time.perf_counter() - started)
    return best


def worker(args: argparse.Namespace) -> None:
    dp.set_num_threads(args.threads)
    if args.measure == "allreduce":
        result = measure_allreduce()
    else:
        result = measure_epoch(args.config, args.distributed, args.independent)
    under_mpi = args.distributed or args.independent or args.measure == "allreduce"
    rank = _comm(True).Get_rank() if under_mpi else 0
    if rank == 0:
        print(json.dumps(result))


# ---------------------------------------------------------------------------------- the driver
def fit_alpha_beta(times: dict[str, float]) -> tuple[float, float]:
    """alpha and beta of t = 2 alpha + bytes beta (p = 2): the smallest message gives alpha,
    the two largest the slope."""
    sizes = sorted(int(size) for size in times)
    alpha = times[str(sizes[0])] / 2
    (small, large) = sizes[-2:]
    beta = (times[str(large)] - times[str(small)]) / (large - small)
    return alpha, beta


def ring_allreduce(p: int, nbytes: int, alpha: float, beta: float) -> float:
    return 0.0 if p == 1 else 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes * beta


def predicted(compute: float, batches: int, sums: list[int], alpha: float, beta: float):
    """Epoch seconds and efficiency on each of RANKS ranks; compute: one batch, one process;
    sums: the bytes of each allreduce of a batch (the statuses, the step's buckets)."""
    rows = []
    for p in RANKS:
        reductions = sum(ring_allreduce(p, nbytes, alpha, beta) for nbytes in sums)
        epoch = batches * (compute / p + reductions)
        rows.append((p, epoch, batches * compute / (p * epoch)))
    return rows


def stops_scaling(rows) -> str:
    """The smallest world size whose efficiency falls below 1/2."""
    below = [p for p, _, efficiency in rows if efficiency < 0.5]
    return f"{below[0]} ranks" if below else "beyond 256 ranks"


def driver(args: argparse.Namespace) -> None:
    collectives = _worker(["--measure", "allreduce"], 1, ranks=2)
    times = collectives["allreduce"]
    alpha, beta = fit_alpha_beta(times)
    networks = {"here (2 ranks, shared memory)": (alpha, beta), **NETWORKS}
    print(f"allreduce between 2 ranks here: alpha {alpha * 1e6:.2f} us, "
          f"beta {beta * 1e9:.3f} ns/byte ({1 / beta / 1e9:.1f} GB/s)")  # fmt: skip
    ((nbytes, zero),) = collectives["reduce_scatter_allgather"].items()
    print(f"{int(nbytes) / 1e6:.1f} MB: Allreduce {times[nbytes] * 1e3:.2f} ms; Reduce_scatter "
          f"then Allgather (a ZeRO-1 step) {zero * 1e3:.2f} ms\n")  # fmt: skip
    print("| config | summed per batch | 1 process, 2 threads | 2 ranks, 1 thread each | ratio "
          "| reductions' share of the 2-rank epoch: in fit | alone "
          "| 2 ranks without reductions: ratio |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    models = {}
    for key in args.configs:
        config = CONFIGS[key]
        one_thread = _worker(["--measure", "epoch", "--config", key], 1)
        # Side by side: the two ways alternate, so that a disturbance hits both alike.
        two_threads, ranks, alone = [], [], []
        epoch = ["--measure", "epoch", "--config", key]
        for _ in range(ROUNDS):
            two_threads.append(_worker(epoch, 2))
            ranks.append(_worker([*epoch, "--distributed"], 1, 2))
            alone.append(_worker([*epoch, "--independent"], 1, 2))
        two_threads, ranks, alone = (
            min(runs, key=lambda m: m["seconds"]) for runs in (two_threads, ranks, alone)
        )
        nbytes = config.n_params * np.dtype(config.dtype).itemsize
        rate = lambda m: m["rows"] / m["seconds"]  # noqa: E731
        print(f"| {key} | {nbytes / 1e6:.2f} MB | {rate(two_threads):,.0f} samples/s "
              f"| {rate(ranks):,.0f} samples/s | {rate(ranks) / rate(two_threads):.2f} "
              f"| {ranks['reduce_seconds_in_fit'] / ranks['seconds']:.0%} "
              f"| {ranks['reduce_seconds'] / ranks['seconds']:.0%} "
              f"| {rate(alone) / rate(two_threads):.2f} |")  # fmt: skip
        itemsize = np.dtype(config.dtype).itemsize
        sums = [n * itemsize for n in [dp._core.REDUCTION_TAIL, *buckets(config)]]
        models[key] = (one_thread["seconds"] / one_thread["batches"], one_thread["batches"], sums)
    for name, (a, b) in networks.items():
        print(f"\nPredicted epoch time (efficiency) over {name}: alpha {a * 1e6:.1f} us, "
              f"{8 / b / 1e9:.0f} Gb/s")  # fmt: skip
        print("| config | " + " | ".join(f"{p}" for p in RANKS) + " | stops scaling at |")
        print("|---|" + "---:|" * len(RANKS) + "---|")
        for key, (compute, batches, sums) in models.items():
            rows = predicted(compute, batches, sums, a, b)
            cells = " | ".join(f"{epoch:.2f} s ({efficiency:.0%})" for _, epoch, efficiency in rows)
            print(f"| {key} | {cells} | {stops_scaling(rows)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["A", "B", "C", "D"], choices="ABCD")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("allreduce", "epoch"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--independent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    worker(args) if args.worker else driver(args)


if __name__ == "__main__":
    main()
