"""What the comparison benchmarks share: the configurations, the data, flop counts and the
GEMM limit. Imported by test_bench_peers.py, peers.py, memory.py and time_to_accuracy.py.

No conftest.py in bench/: tests/ imports its own with ``from conftest import ...``, which would
find this folder's instead when both folders run in one session.

Shapes follow deltaprop: rows are samples, X is (n, n_0), W^l is (n_l, n_{l-1}), b^l is (n_l,).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import resource
import time

import numpy as np

import deltaprop as dp

N_TRAIN, N_TEST, N_PIXELS, N_CLASSES = 60_000, 10_000, 28 * 28, 10
SEED = 0  # of the networks' initialisation and of the epochs' row orders
SYNTHETIC_SEED = 20_240_601

# DELTAPROP_BENCH_QUICK=1: a smoke run of the whole comparison in about a minute (few rows,
# one round); the table it prints is not a measurement.
QUICK = os.environ.get("DELTAPROP_BENCH_QUICK", "") not in ("", "0")
# DELTAPROP_BENCH_WAIT_IDLE=S: before each timing, wait up to S seconds for a moment in which
# other processes leave the CPUs alone (for shared machines); 0 or unset: do not wait.
WAIT_IDLE = float(os.environ.get("DELTAPROP_BENCH_WAIT_IDLE", "0") or 0)


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmarked setting of the issue: a network, its training and the rows timed."""

    key: str  # "A".."E"
    title: str
    sizes: tuple[int, ...]
    activation: str
    output: str
    cost: str
    dtype: str
    init: str
    batch_size: int
    optimizer: str = "sgd"  # deltaprop's name: "sgd" or "momentum"
    lr: float = 0.1
    momentum: float = 0.0
    lmbda: float = 0.0  # Nielsen's L2: the gradient gains (lmbda / n) W, n = N_TRAIN
    predict: bool = False  # E: inference only (batch_size is then only C's, for the peers)
    rows: dict = dataclasses.field(default_factory=dict)  # implementation -> rows timed
    notes: tuple[str, ...] = ()

    @property
    def names(self) -> dict[str, str]:
        return {"activation": self.activation, "output": self.output, "cost": self.cost}

    @property
    def n_weights(self) -> int:
        """P of the issue's flop count: the weights, not the biases."""
        return sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def n_params(self) -> int:
        return self.n_weights + sum(self.sizes[1:])

    @property
    def flops_per_sample(self) -> int:
        """2P forward; training adds 4P backward minus the input layer's delta product
        (2 n_0 n_1), which no implementation computes."""
        if self.predict:
            return 2 * self.n_weights
        return 6 * self.n_weights - 2 * self.sizes[0] * self.sizes[1]

    def rows_for(self, implementation: str) -> int:
        """Rows one timed round covers (training: of the epoch; E: samples predicted)."""
        full = N_TEST if self.predict else N_TRAIN
        rows = self.rows.get(implementation, full)
        if QUICK:
            return min(rows, 2 * self.batch_size) if implementation != "reference" else 2
        return rows


# Rows timed: the full epoch where it takes about a second or less, else a fixed subset (the
# table says which). The pure-Python reference gets a few rows and is extrapolated.
CONFIGS = {
    c.key: c
    for c in [
        Config(
            "A", "Nielsen ch. 1: sigmoid, quadratic, SGD", (784, 30, 10), "sigmoid", "sigmoid",
            "quadratic", "float64", "normal_scaled", batch_size=10, lr=3.0,
            rows={"sklearn": 20_000, "numpy": 20_000, "reference": 30},
        ),
        Config(
            "B", "Nielsen ch. 3: sigmoid, cross-entropy, L2", (784, 100, 10), "sigmoid",
            "sigmoid", "cross_entropy", "float64", "normal_scaled", batch_size=10, lr=0.5,
            lmbda=5.0, rows={"sklearn": 10_000, "numpy": 20_000, "reference": 20},
        ),
        Config(
            "C", "ReLU, softmax + log-likelihood, momentum", (784, 256, 128, 10), "relu",
            "softmax", "log_likelihood", "float32", "he", batch_size=128, optimizer="momentum",
            lr=0.05, momentum=0.9, rows={"reference": 16},
        ),
        Config(
            "D", "wide ReLU, softmax + log-likelihood, momentum", (784, 1024, 1024, 10), "relu",
            "softmax", "log_likelihood", "float32", "he", batch_size=256, optimizer="momentum",
            lr=0.01, momentum=0.9,
            rows={impl: 10_240 for impl in ("deltaprop", "torch", "sklearn", "numpy")}
            | {"reference": 4},
            notes=("the issue names no optimizer for D: SGD with momentum 0.9, as C",),
        ),
        Config(
            "E", "inference: predict with C's network", (784, 256, 128, 10), "relu", "softmax",
            "log_likelihood", "float32", "he", batch_size=128, predict=True,
            rows={"reference": 20},
        ),
    ]
}  # fmt: skip

IMPLEMENTATIONS = ("deltaprop", "torch", "sklearn", "numpy", "reference")

# The targets, from one run: deltaprop's samples/s over each peer's, and its fraction
# of the GEMM limit ("limit"). None: no target (the reference ~1e4x slower is only reported).
TARGETS = {
    "A": {"torch": 6.0, "sklearn": 4.0, "limit": 0.80},
    "B": {"torch": 4.0, "sklearn": 3.0, "limit": 0.80},
    "C": {"torch": 1.8, "sklearn": 1.8, "limit": 0.85},
    "D": {"torch": 1.8, "sklearn": 1.5, "limit": 0.90},
    "E": {"torch": 2.0, "sklearn": 2.0},
}


def _core_file_digest() -> str:
    with open(dp._core.__file__, "rb") as core:
        return hashlib.sha256(core.read()).hexdigest()[:12]


_CORE_LOADED = _core_file_digest()  # the build this process runs (read when first imported)


def core_builds() -> dict[str, str]:
    """The compiled core this process loaded and the one installed now: they differ when
    deltaprop was reinstalled during the run (then the figures mix two builds)."""
    return {"core_loaded": _CORE_LOADED, "core_installed": _core_file_digest()}


def threads() -> int:
    """BLAS threads deltaprop uses; every peer gets as many."""
    return dp.get_num_threads()


# ------------------------------------------------------------------------------------ data
@functools.cache
def _fashion_mnist_or_synthetic() -> tuple[str, tuple, tuple]:
    """("fashion-mnist" or "synthetic", (X_train uint8, y_train), (X_test uint8, y_test))."""
    try:
        (X, y), (X_test, y_test) = dp.datasets.load_fashion_mnist(dtype="float32")
    except FileNotFoundError:
        rng = np.random.default_rng(SYNTHETIC_SEED)
        X = rng.integers(0, 256, size=(N_TRAIN, N_PIXELS), dtype=np.uint8)
        X_test = rng.integers(0, 256, size=(N_TEST, N_PIXELS), dtype=np.uint8)
        y, y_test = rng.integers(0, N_CLASSES, N_TRAIN), rng.integers(0, N_CLASSES, N_TEST)
        return "synthetic", (X, y), (X_test, y_test)
    # Back to the pixels, so that both precisions are pixel / 255 rounded once.
    to_pixels = lambda images: np.rint(images * 255).astype(np.uint8)  # noqa: E731
    return "fashion-mnist", (to_pixels(X), y), (to_pixels(X_test), y_test)


def data_source() -> str:
    return _fashion_mnist_or_synthetic()[0]


@dataclasses.dataclass(frozen=True)
class Data:
    """One split in one dtype, in the layouts the implementations take without converting.

    X : ndarray of shape (n, 784), C-contiguous, values pixel / 255
    Y : ndarray of shape (n, 10), one-hot, in X's dtype
    labels : int64 ndarray of shape (n,)

    Writable, because torch.from_numpy warns (an error here) on read-only arrays; nothing
    writes to them.
    """

    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray


@functools.cache
def data(split: str, dtype: str) -> Data:
    """The training ("train") or test ("test") split, cached per dtype."""
    _, train, test = _fashion_mnist_or_synthetic()
    pixels, labels = train if split == "train" else test
    X = pixels.astype(dtype) / np.array(255, dtype=dtype)
    Y = np.eye(N_CLASSES, dtype=dtype)[labels]
    return Data(X, Y, np.ascontiguousarray(labels, dtype=np.int64))


def make_network(config: Config) -> dp.Network:
    return dp.Network(
        list(config.sizes), dtype=config.dtype, init=config.init, seed=SEED, **config.names
    )


def epoch_order(n: int, round_: int = 0) -> np.ndarray:
    """The permutation ``Network.fit(..., seed=round_)`` draws for its first epoch."""
    return np.random.default_rng(round_).permutation(n)


# ------------------------------------------------------------------------------------ GEMM limit
class GemmLimit:
    """The GEMMs of one mini-batch alone, with numpy's matmul on preallocated arrays.

    Training, per layer l = 1..L: the forward product Z^l = A^{l-1} (W^l)^T, (B, n_{l-1}) @
    (n_{l-1}, n_l); BP4's dW^l = (delta^l)^T A^{l-1}, (n_l, B) @ (B, n_{l-1}); and for l >= 2
    BP2's delta^l W^l, (B, n_l) @ (n_l, n_{l-1}). Prediction (E): the forward products only.
    Inputs are random: the time of a dense product does not depend on the values.
    """

    def __init__(self, config: Config, batch: int | None = None) -> None:
        rng = np.random.default_rng(SEED)
        dtype = np.dtype(config.dtype)
        if batch is None:  # E predicts its N_TEST rows in one go
            batch = N_TEST if config.predict else config.batch_size
        self.batch = batch
        B, sizes = self.batch, config.sizes

        def random(*shape):
            return rng.standard_normal(shape).astype(dtype)

        self.products = []  # (left, right, out)
        for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            A_prev, W = random(B, n_in), random(n_out, n_in)
            self.products.append((A_prev, W.T, np.empty((B, n_out), dtype)))
            if config.predict:
                continue
            delta = random(B, n_out)
            self.products.append((delta.T, A_prev, np.empty((n_out, n_in), dtype)))
            if l > 1:
                self.products.append((delta, W, np.empty((B, n_in), dtype)))

    def run(self, batches: int) -> None:
        matmul, products = np.matmul, self.products
        for _ in range(batches):
            for left, right, out in products:
                matmul(left, right, out=out)

    @staticmethod
    def call_overhead(calls: int = 20_000) -> float:
        """Seconds numpy spends on one matmul call beyond the product: a (1, 1) @ (1, 1)
        product into a preallocated output, the cheapest call there is."""
        a, out = np.ones((1, 1)), np.empty((1, 1))
        best = np.inf
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                np.matmul(a, a, out=out)
            best = min(best, (time.perf_counter() - started) / calls)
        return best

    def batches_for(self, seconds: float) -> int:
        """Batches whose GEMMs take about `seconds`."""
        self.run(2)
        started = time.perf_counter()
        self.run(5)
        per_batch = (time.perf_counter() - started) / 5
        return max(1, round(seconds / per_batch))


# ------------------------------------------------------------------------------------ disturbance
class CpuMonitor:
    """How much of the machine others used while a benchmark ran: a run is only as good as
    the machine was idle (threaded BLAS sharing its cores with a busy process can be many
    times slower). From /proc/stat (all CPUs) minus this process's own CPU time (all its
    threads), as a fraction of the CPU time there was; steal is the hypervisor's share."""

    _BUSY = (0, 1, 2, 5, 6)  # user, nice, system, irq, softirq
    _STEAL = 7

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, float] | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy = sum(fields[i] for i in CpuMonitor._BUSY) / hz
        steal = fields[CpuMonitor._STEAL] / hz if len(fields) > CpuMonitor._STEAL else 0.0
        return time.perf_counter(), busy, steal, usage.ru_utime + usage.ru_stime

    def result(self) -> dict[str, float]:
        end = self._sample()
        if self.start is None or end is None:
            return {}
        wall = end[0] - self.start[0]
        available = wall * (os.cpu_count() or 1)
        own = end[3] - self.start[3]
        others = max(0.0, (end[1] - self.start[1]) - own)
        return {
            "monitored_seconds": wall,
            "others_cpu_fraction": others / available if available else 0.0,
            "steal_fraction": (end[2] - self.start[2]) / available if available else 0.0,
        }


def wait_for_idle(max_seconds: float = WAIT_IDLE, window: float = 0.5, busy: float = 0.05) -> float:
    """Wait until other processes use less than `busy` of the CPU time over `window` seconds,
    for at most `max_seconds`; return the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < max_seconds:
        monitor = CpuMonitor()
        time.sleep(window)
        if monitor.result().get("others_cpu_fraction", 0.0) < busy:
            break
    return time.perf_counter() - started
