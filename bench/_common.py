"""What the benchmarks and scripts of bench/ share: configurations A-E with their targets, the
data, the GEMM limit and the check that the machine stayed idle.

No conftest.py in bench/: tests/ imports its own with ``from conftest import ...``, which would
find this folder's instead when both folders run in one session.

Shapes follow deltaprop: rows are samples, X is (n, n_0), W^l is (n_l, n_{l-1}), b^l is (n_l,).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import resource
import time

import numpy as np
from threadpoolctl import threadpool_limits

import deltaprop as dp

N_TRAIN, N_TEST, N_CLASSES = 60_000, 10_000, 10
SEED = 0  # of the networks' initialisation and of the epochs' row orders
SYNTHETIC_SEED = 20_240_601
# DELTAPROP_BENCH_QUICK=1: every benchmark on a few rows, one round; a check, not a measurement.
QUICK = os.environ.get("DELTAPROP_BENCH_QUICK", "") not in ("", "0")
# DELTAPROP_BENCH_WAIT_IDLE=S: before each benchmark, wait up to S seconds for an idle moment.
WAIT_IDLE = float(os.environ.get("DELTAPROP_BENCH_WAIT_IDLE", "0") or 0)
IMPLEMENTATIONS = ("deltaprop", "torch", "sklearn", "numpy", "reference")
# Largest |difference| allowed between two implementations, relative to the largest |value|.
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmarked setting: a network, its training and the rows each implementation is
    timed on (``rows``; default: all training rows, or all test rows for prediction)."""

    key: str
    title: str
    sizes: tuple[int, ...]
    activation: str
    output: str
    cost: str
    dtype: str
    init: str
    batch_size: int  # E: C's, with which the peers are built
    optimizer: str = "sgd"  # deltaprop's name
    lr: float = 0.1
    momentum: float = 0.0
    lmbda: float = 0.0  # Nielsen's L2: the gradient gains (lmbda / n) W
    predict: bool = False  # E: inference only
    precision: str = "highest"  # deltaprop's matmul_precision; "bfloat16": PyTorch autocasts
    rows: dict = dataclasses.field(default_factory=dict)
    targets: dict = dataclasses.field(default_factory=dict)  # peer or "limit" -> ratio
    notes: tuple[str, ...] = ()

    @property
    def names(self) -> dict[str, str]:
        return {"activation": self.activation, "output": self.output, "cost": self.cost}

    @property
    def n_params(self) -> int:
        return self.n_weights + sum(self.sizes[1:])

    @property
    def n_weights(self) -> int:
        return sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def flops_per_sample(self) -> int:
        """2P forward; training adds 4P backward less the input layer's delta product."""
        if self.predict:
            return 2 * self.n_weights
        return 6 * self.n_weights - 2 * self.sizes[0] * self.sizes[1]

    def rows_for(self, implementation: str, smoke: bool = False) -> int:
        """Rows a round covers; smoke and QUICK runs take two batches (the reference two rows)."""
        rows = self.rows.get(implementation, N_TEST if self.predict else N_TRAIN)
        if smoke or QUICK:
            return 2 if implementation == "reference" else min(rows, 2 * self.batch_size)
        return rows


# Targets: deltaprop's samples/s over each peer's, and its fraction of the GEMM limit ("limit").
# Rows: a subset where a full epoch would take many seconds; the reference is extrapolated.
CONFIGS = {
    c.key: c
    for c in [
        Config(
            "A", "Nielsen ch. 1: sigmoid, quadratic, SGD", (784, 30, 10), "sigmoid", "sigmoid",
            "quadratic", "float64", "normal_scaled", batch_size=10, lr=3.0,
            rows={"sklearn": 20_000, "numpy": 20_000, "reference": 30},
            targets={"torch": 6.0, "sklearn": 4.0, "limit": 0.85},
        ),
        Config(
            "B", "Nielsen ch. 3: sigmoid, cross-entropy, L2", (784, 100, 10), "sigmoid",
            "sigmoid", "cross_entropy", "float64", "normal_scaled", batch_size=10, lr=0.5,
            lmbda=5.0, rows={"sklearn": 10_000, "numpy": 20_000, "reference": 20},
            targets={"torch": 4.0, "sklearn": 3.0, "limit": 0.80},
        ),
        Config(
            "C", "ReLU, softmax + log-likelihood, momentum", (784, 256, 128, 10), "relu",
            "softmax", "log_likelihood", "float32", "he", batch_size=128, optimizer="momentum",
            lr=0.05, momentum=0.9, rows={"reference": 16},
            targets={"torch": 1.8, "sklearn": 1.8, "limit": 0.90},
        ),
        Config(
            "D", "wide ReLU, softmax + log-likelihood, momentum", (784, 1024, 1024, 10), "relu",
            "softmax", "log_likelihood", "float32", "he", batch_size=256, optimizer="momentum",
            lr=0.01, momentum=0.9, rows={**dict.fromkeys(IMPLEMENTATIONS, 10_240), "reference": 4},
            targets={"torch": 1.8, "sklearn": 1.5, "limit": 0.90},
            notes=("the issue names no optimizer for D: SGD with momentum 0.9, as C",),
        ),
        Config(
            "E", "inference: predict with C's network", (784, 256, 128, 10), "relu", "softmax",
            "log_likelihood", "float32", "he", batch_size=128, predict=True,
            rows={"reference": 20}, targets={"torch": 2.0, "sklearn": 2.0},
        ),
    ]
}  # fmt: skip
# bfloat16 rows: C, D and E with matmul_precision="bfloat16", PyTorch under autocast, and the
# bfloat16 GEMM limit. Only deltaprop and PyTorch compute in bfloat16.
BFLOAT16_TARGETS = {
    "C": {"torch": 1.5, "limit": 0.75},
    "D": {"torch": 1.25, "limit": 0.80},
    "E": {},
}
CONFIGS.update(
    {
        f"{key}-bf16": dataclasses.replace(
            CONFIGS[key],
            key=f"{key}-bf16",
            title=f"{CONFIGS[key].title}, bfloat16 products",
            precision="bfloat16",
            targets=targets,
            rows={k: v for k, v in CONFIGS[key].rows.items() if k in ("deltaprop", "torch")},
            notes=(*CONFIGS[key].notes, "PyTorch: torch.autocast('cpu', dtype=torch.bfloat16) "
                   "around the forward pass and the loss, the optimizer outside"),
        )
        for key, targets in BFLOAT16_TARGETS.items()
    }
)  # fmt: skip
BFLOAT16_IMPLEMENTATIONS = ("deltaprop", "torch")


def threads() -> int:
    """BLAS threads deltaprop uses; every peer and the GEMM limit get as many."""
    return dp.get_num_threads()


def make_network(config: Config) -> dp.Network:
    """The network of `config` every implementation starts from."""
    return dp.Network(
        list(config.sizes), dtype=config.dtype, init=config.init, seed=SEED,
        matmul_precision=config.precision, **config.names,
    )  # fmt: skip


def make_optimizer(config: Config) -> dp.optim.Optimizer:
    """deltaprop's optimizer for `config` (``get`` ignores the momentum of optimizers without)."""
    return dp.optim.get(config.optimizer, lr=config.lr, momentum=config.momentum)


def epoch_order(n: int, seed: int | None) -> np.ndarray | None:
    """The row order ``Network.fit(..., seed=seed)`` draws for one epoch; None: storage order."""
    return None if seed is None else np.random.default_rng(seed).permutation(n)


def _core_digest() -> str:
    with open(dp._core.__file__, "rb") as core:
        return hashlib.sha256(core.read()).hexdigest()[:12]


_CORE_LOADED = _core_digest()


def core_builds() -> dict[str, str]:
    """The compiled core this process runs and the one installed now: they differ when deltaprop
    was reinstalled during the run, whose figures then mix two builds."""
    return {"core_loaded": _CORE_LOADED, "core_installed": _core_digest()}


# ---------------------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class Data:
    """One split in one dtype, in the layouts the implementations take without converting.

    X : ndarray of shape (n, 784), C-contiguous, pixel / 255
    Y : ndarray of shape (n, 10), one-hot, in X's dtype
    labels : int64 ndarray of shape (n,)
    """

    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray

    def first(self, rows: int | None) -> Data:
        """The first `rows` rows (None: all)."""
        return Data(self.X[:rows], self.Y[:rows], self.labels[:rows])


@functools.cache
def _pixels() -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """("fashion-mnist" or "synthetic", split -> (uint8 pixels (n, 784), labels (n,)))."""
    try:
        (X, y), (X_test, y_test) = dp.datasets.load_fashion_mnist(dtype="float32")
    except FileNotFoundError:
        rng = np.random.default_rng(SYNTHETIC_SEED)
        split = lambda n: (rng.integers(0, 256, (n, 784), np.uint8), rng.integers(0, 10, n))  # noqa: E731
        return "synthetic", {"train": split(N_TRAIN), "test": split(N_TEST)}
    # Back to pixels, so that both dtypes are pixel / 255 rounded once.
    pixels = lambda images: np.rint(images * 255).astype(np.uint8)  # noqa: E731
    return "fashion-mnist", {"train": (pixels(X), y), "test": (pixels(X_test), y_test)}


def data_source() -> str:
    return _pixels()[0]


@functools.cache
def data(split: str, dtype: str) -> Data:
    """The "train" or "test" split in `dtype` (writable: torch.from_numpy warns on read-only)."""
    pixels, labels = _pixels()[1][split]
    X = pixels.astype(dtype) / np.array(255, dtype=dtype)
    return Data(X, np.eye(N_CLASSES, dtype=dtype)[labels], labels.astype(np.int64))


# ---------------------------------------------------------------------------------- GEMM limit
class GemmLimit:
    """The GEMMs of one mini-batch alone, numpy's matmul on preallocated random arrays.

    Per layer l: the forward Z^l = A^{l-1} (W^l)^T, (B, n_{l-1}) @ (n_{l-1}, n_l); in training
    also BP4's (delta^l)^T A^{l-1}, (n_l, B) @ (B, n_{l-1}), and for l >= 2 BP2's delta^l W^l,
    (B, n_l) @ (n_l, n_{l-1}). Prediction (E) multiplies all N_TEST rows at once.
    """

    def __init__(self, config: Config) -> None:
        rng, dtype = np.random.default_rng(SEED), np.dtype(config.dtype)
        B = self.batch = N_TEST if config.predict else config.batch_size
        random = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
        self.products = []  # (left, right, out)
        for l, (n_in, n_out) in enumerate(zip(config.sizes[:-1], config.sizes[1:]), start=1):
            A_prev, W, delta = random(B, n_in), random(n_out, n_in), random(B, n_out)
            self.products.append((A_prev, W.T, np.empty((B, n_out), dtype)))
            if not config.predict:
                self.products.append((delta.T, A_prev, np.empty((n_out, n_in), dtype)))
                if l > 1:
                    self.products.append((delta, W, np.empty((B, n_in), dtype)))

    def run(self) -> None:
        """One batch's products (BLAS threads set by the caller)."""
        for left, right, out in self.products:
            np.matmul(left, right, out=out)

    def samples_per_s(self, seconds: float) -> float:
        """Rate of the products run over and over for at least `seconds`, on threads() threads,
        after one untimed batch that wakes the BLAS threads."""
        with threadpool_limits(threads(), user_api="blas"):
            return self._rate(seconds)

    def _rate(self, seconds: float) -> float:
        """Samples/s of the products run over and over for `seconds`, after one untimed run."""
        self.run()
        batches, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            self.run()
            batches += 1
        return batches * self.batch / elapsed

    @staticmethod
    def for_config(config: Config) -> GemmLimit:
        """The limit of `config`'s products in its precision."""
        return Bfloat16GemmLimit(config) if config.precision == "bfloat16" else GemmLimit(config)

    @staticmethod
    def call_overhead(calls: int = 20_000) -> float:
        """Seconds numpy spends on one matmul call beyond the product: the best of five timings
        of a (1, 1) @ (1, 1) product."""
        a, out = np.ones((1, 1)), np.empty((1, 1))
        best = np.inf
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                np.matmul(a, a, out=out)
            best = min(best, (time.perf_counter() - started) / calls)
        return best


class Bfloat16GemmLimit(GemmLimit):
    """The same products on bfloat16 operands with float32 results: PyTorch's CPU matmul of
    bfloat16 tensors, which runs oneDNN's bfloat16 kernels (``ONEDNN_VERBOSE=1`` shows
    them), on threads() threads. The float32 outputs are rounded to bfloat16 by PyTorch."""

    def __init__(self, config: Config) -> None:
        import torch

        super().__init__(config)
        self.torch = torch
        torch.set_num_threads(threads())
        as_bf16 = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(torch.bfloat16)  # noqa: E731
        self.products = [
            (as_bf16(left), as_bf16(right), as_bf16(out)) for left, right, out in self.products
        ]

    def run(self) -> None:
        for left, right, out in self.products:
            self.torch.matmul(left, right, out=out)

    def samples_per_s(self, seconds: float) -> float:
        return self._rate(seconds)  # PyTorch's threads: set in __init__


# ------------------------------------------------------------------------------------- idleness
def _cpu_times() -> tuple[float, float, float, float]:
    """(wall, CPU busy on all cores, stolen by the hypervisor, this process's CPU) in seconds."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    hz, own = os.sysconf("SC_CLK_TCK"), resource.getrusage(resource.RUSAGE_SELF)
    busy = sum(ticks[i] for i in (0, 1, 2, 5, 6))  # user, nice, system, irq, softirq
    return time.perf_counter(), busy / hz, ticks[7] / hz, own.ru_utime + own.ru_stime


def others_usage(start: tuple, end: tuple) -> dict[str, float]:
    """Share of the CPU time other processes used (and the hypervisor stole) from start to end."""
    available = (end[0] - start[0]) * (os.cpu_count() or 1)
    others = (end[1] - start[1]) - (end[3] - start[3])
    return {
        "monitored_seconds": end[0] - start[0],
        "others_cpu_fraction": max(0.0, others) / available,
        "steal_fraction": (end[2] - start[2]) / available,
    }


def wait_for_idle(max_seconds: float, window: float = 0.5, busy: float = 0.05) -> float:
    """Wait up to `max_seconds` for `window` seconds in which others use under `busy` of the
    CPUs; return the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < max_seconds:
        before = _cpu_times()
        time.sleep(window)
        if others_usage(before, _cpu_times())["others_cpu_fraction"] < busy:
            break
    return time.perf_counter() - started


@contextlib.contextmanager
def watching_the_machine(extra_info: dict):
    """Record in `extra_info` how much CPU other processes took meanwhile (threaded BLAS sharing
    its cores with a busy process runs several times slower); first wait for idle if asked."""
    if WAIT_IDLE > 0:
        extra_info["waited_for_idle_s"] = wait_for_idle(WAIT_IDLE)
    start = _cpu_times()
    yield
    extra_info.update(others_usage(start, _cpu_times()))
