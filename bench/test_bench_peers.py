"""deltaprop against PyTorch, scikit-learn, NumPy and the pure-Python reference (the issue's
configurations A-E), with the GEMM limit of each configuration measured in the same run.

Benchmark groups, one per configuration:

* ``<A-D>-train``: one training epoch per implementation (``test_train``) and the GEMMs of
  one mini-batch alone (``test_gemm_limit``);
* ``E-predict``: predicting the 10,000 test images with C's network, and its GEMM limit;
* ``consistency``: not a timing; the peers and deltaprop take the same three mini-batches from
  the same weights and must end with the same parameters (``test_same_steps``). It uses the
  benchmark fixture only so that ``--benchmark-only`` runs it too;
* ``memory`` and ``time-to-accuracy``: see memory.py and time_to_accuracy.py.

``python bench/report.py RUN.json`` turns a run into the comparison table. Every benchmark
records what it measured in ``extra_info``: the configuration, implementation, rows timed,
samples/s (rows / median round) and whether they were extrapolated. Peers that are not
installed are skipped here, with the reason, and the report lists them as absent.
"""

from __future__ import annotations

import functools
import time

import _common
import memory
import numpy as np
import peers
import pytest
import time_to_accuracy
from _common import CONFIGS, IMPLEMENTATIONS, N_TEST, N_TRAIN, SEED, TARGETS, Config, threads
from threadpoolctl import threadpool_limits

import deltaprop as dp

TRAINING = [c for c in CONFIGS.values() if not c.predict]
PREDICTION = [c for c in CONFIGS.values() if c.predict]
# Largest |difference| allowed, relative to the largest |value| of the layer compared.
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
ROUND_SECONDS = 8.0  # about how long the timed rounds of one benchmark take, in all
MIN_ROUNDS, MAX_ROUNDS = 3, 15
SMOKE_REFERENCE_ROWS = 2


def cases(configs: list[Config], kind: str) -> list:
    return [
        pytest.param(c, id=c.key, marks=pytest.mark.benchmark(group=f"{c.key}-{kind}"))
        for c in configs
    ]


def require(implementation: str) -> None:
    version = peers.available()[implementation]
    if version is None:
        pytest.skip(f"{implementation}: not installed (pip install '.[bench]'); reported absent")


@functools.cache
def initial_network(key: str) -> dp.Network:
    """The network every implementation of configuration `key` starts from (E: C's)."""
    return _common.make_network(CONFIGS[key])


def rows_timed(benchmark, config: Config, implementation: str) -> int:
    if benchmark.disabled:  # the smoke test: two mini-batches, two rows for the reference
        if implementation == "reference":
            return SMOKE_REFERENCE_ROWS
        return N_TEST if config.predict else 2 * config.batch_size
    return config.rows_for(implementation)


def timed(benchmark, function, setup=None, args=(), max_rounds=MAX_ROUNDS):
    """Median-of-rounds timing; rounds sized from a first (warm-up) round to ~ROUND_SECONDS.

    Also records how much CPU other processes used meanwhile (see _common.CpuMonitor)."""
    if benchmark.disabled:
        return benchmark.pedantic(function, args=args, setup=setup)
    if _common.WAIT_IDLE > 0:
        benchmark.extra_info["waited_for_idle_s"] = _common.wait_for_idle()
    monitor = _common.CpuMonitor()
    if setup is not None:
        setup()
    started = time.perf_counter()
    function(*args)
    first = time.perf_counter() - started
    rounds = min(max_rounds, max(MIN_ROUNDS, round(ROUND_SECONDS / first)))
    rounds = 1 if _common.QUICK else rounds
    result = benchmark.pedantic(function, args=args, setup=setup, rounds=rounds)
    benchmark.extra_info.update(monitor.result())
    return result


def record(benchmark, config: Config, implementation: str, rows: int, **extra) -> None:
    """What report.py needs: who ran what, on how many rows, and at what rate."""
    full = N_TEST if config.predict else N_TRAIN
    info = benchmark.extra_info
    info.update(
        config=config.key,
        title=config.title,
        sizes=list(config.sizes),
        implementation=implementation,
        version=peers.available().get(implementation),
        dtype=config.dtype,
        batch_size=N_TEST if config.predict and implementation == "gemm-limit" else (
            config.batch_size
        ),
        threads=threads(),
        data=_common.data_source(),
        rows_timed=rows,
        full_rows=full,
        flops_per_sample=config.flops_per_sample,
        quick=_common.QUICK,
        # Every record carries what the report needs about the whole configuration, so that
        # it can be printed whichever benchmarks of it ran.
        peers=peers.available(),
        targets=TARGETS[config.key],
        config_notes=list(config.notes),
        **_common.core_builds(),
        **extra,
    )  # fmt: skip
    if benchmark.enabled:
        samples_per_s = rows / benchmark.stats.stats.median
        info.update(
            samples_per_s=samples_per_s, gflops=samples_per_s * config.flops_per_sample / 1e9
        )
        if implementation == "reference":
            info.update(extrapolated=True, extrapolated_full_s=full / samples_per_s)


def assert_layers_close(actual, expected, dtype: str, what: str, scale: float = 1.0) -> None:
    assert len(actual) == len(expected), what
    for l, (a, e) in enumerate(zip(actual, expected)):
        e = np.asarray(e, dtype=np.float64)
        atol = scale * TOLERANCE[dtype] * np.abs(e).max()
        np.testing.assert_allclose(
            np.asarray(a, dtype=np.float64), e, rtol=0, atol=atol, err_msg=f"{what}[{l}]"
        )


def training_rows(config: Config, rows: int):
    d = _common.data("train", config.dtype)
    return d.X[:rows], d.Y[:rows], d.labels[:rows]


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(axis=1) == labels))


class InterleavedLimit:
    """The GEMM limit timed again before each of deltaprop's rounds (in the benchmark's untimed
    setup), so that deltaprop's fraction of it compares rates measured seconds apart: on a
    shared or virtual machine the throughput of the same GEMMs drifts by tens of percent
    within minutes, which the separate test_gemm_limit cannot see."""

    # numpy's OpenBLAS threads keep spinning ~0.1 s after its last call (its default
    # OPENBLAS_THREAD_TIMEOUT): let them go to sleep before deltaprop's round starts.
    SETTLE_S = 0.15

    def __init__(self, config: Config, enabled: bool) -> None:
        self.limit = _common.GemmLimit(config) if enabled else None
        self.seconds: list[float] = []
        if self.limit is not None:
            with threadpool_limits(threads(), user_api="blas"):
                self.batches = self.limit.batches_for(0.2)

    def then(self, setup):
        """`setup`, preceded by one timing of the limit."""

        def both():
            if self.limit is not None:
                with threadpool_limits(threads(), user_api="blas"):
                    started = time.perf_counter()
                    self.limit.run(self.batches)
                    self.seconds.append(time.perf_counter() - started)
                time.sleep(self.SETTLE_S)
            return setup() if setup is not None else None

        return both

    def record(self, benchmark) -> None:
        if self.limit is None or not self.seconds:
            return
        rate = self.batches * self.limit.batch / float(np.median(self.seconds))
        benchmark.extra_info.update(
            interleaved_limit_samples_per_s=rate,
            interleaved_limit_rounds=len(self.seconds),
        )


# ------------------------------------------------------------------------------- training epochs
# A module-scoped parametrized fixture makes pytest run everything of one configuration
# together (its epochs, then its GEMM limit), so that the figures compared with each other are
# measured minutes apart at most.
@pytest.fixture(scope="module", params=cases(TRAINING, "train"))
def config(request) -> Config:
    return request.param


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_train(benchmark, config, implementation):
    require(implementation)
    rows = rows_timed(benchmark, config, implementation)
    X, Y, labels = training_rows(config, rows)
    start = initial_network(config.key)
    peer = peers.make(implementation, config, X, Y, labels, start)
    notes = []
    if implementation == "reference":
        peer.prepare(SEED)
        notes.append(f"extrapolated from {rows} rows")
        if config.optimizer != "sgd":
            notes.append("plain SGD (the reference has no momentum)")
        if rows < config.batch_size:
            notes.append(f"one batch of {rows}: the update's share is overweighted")
    if implementation == "sklearn" and config.cost == "quadratic":
        notes.append("binary log-loss (scikit-learn has no quadratic cost)")
    if implementation == "torch":
        notes.append("torch.optim.SGD defaults (for-loop, not foreach/fused, on CPU)")

    # The reference's rounds only estimate a rate 1e3-1e4 times lower: three are plenty.
    max_rounds = MIN_ROUNDS if implementation == "reference" else MAX_ROUNDS
    interleaved = InterleavedLimit(config, implementation == "deltaprop" and benchmark.enabled)
    cost = timed(
        benchmark, peer.epoch, setup=interleaved.then(peer.reset), args=(SEED,),
        max_rounds=max_rounds,
    )  # fmt: skip
    interleaved.record(benchmark)

    weights, biases = peer.parameters()
    assert all(np.isfinite(p).all() for p in weights + biases)
    assert not np.array_equal(weights[0], start.weights[0]), "the weights did not change"
    learned = rows >= 10 * config.batch_size  # enough batches to have learnt something
    if implementation in ("deltaprop", "torch", "numpy"):
        # The same cost, measured during the epoch: it must have fallen below the start's.
        assert np.isfinite(cost)
        assert cost < start.cost(X, Y) or not learned
    elif implementation == "sklearn":
        assert np.isfinite(cost)
        before = accuracy(start.predict(X), labels)
        assert accuracy(peer.predict(X), labels) > before or not learned
    else:  # the reference against deltaprop's plain SGD on the same rows in the same order
        order = np.random.default_rng(SEED).permutation(rows)
        check = dp.Network.from_params(start.weights, start.biases, **config.names)
        check.fit(
            X[order], Y[order], epochs=1, batch_size=config.batch_size, optimizer="sgd",
            lr=config.lr, lmbda=config.lmbda, shuffle=False,
        )  # fmt: skip
        assert_layers_close(weights, check.weights, config.dtype, "weights")
        assert_layers_close(biases, check.biases, config.dtype, "biases")
    extra = {}
    if implementation == "deltaprop" and benchmark.enabled:
        # The epoch alone, as fit times it: without fit's once-per-call input checks, which a
        # fit of many epochs pays once.
        inside = rows / float(np.median(peer.fit_seconds))
        extra["samples_per_s_inside_fit"] = inside
        notes.append(f"{inside:,.0f} samples/s inside fit, without its per-call input checks")
    record(benchmark, config, implementation, rows, notes=notes, **extra)


# ------------------------------------------------------------------------------- prediction (E)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("config", cases(PREDICTION, "predict"))
def test_predict(benchmark, config, implementation):
    require(implementation)
    rows = rows_timed(benchmark, config, implementation)
    test = _common.data("test", config.dtype)
    X = test.X[:rows]
    start = initial_network(config.key)
    train_X, train_Y, train_labels = training_rows(config, config.batch_size)
    peer = peers.make(implementation, config, train_X, train_Y, train_labels, start)

    max_rounds = MIN_ROUNDS if implementation == "reference" else MAX_ROUNDS
    interleaved = InterleavedLimit(config, implementation == "deltaprop" and benchmark.enabled)
    outputs = timed(
        benchmark, peer.predict, args=(X,), setup=interleaved.then(None), max_rounds=max_rounds
    )
    interleaved.record(benchmark)

    assert outputs.shape == (rows, config.sizes[-1])
    expected = start.predict(X)
    # Probabilities: compared to deltaprop's in absolute terms (rows sum to 1).
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e3 * TOLERANCE[config.dtype])
    notes = [f"extrapolated from {rows} rows"] if implementation == "reference" else []
    record(benchmark, config, implementation, rows, notes=notes)


# ------------------------------------------------------------------------------- GEMM limit
def test_gemm_limit(benchmark, config):
    """numpy's matmul on the GEMMs one mini-batch needs, with as many BLAS threads as
    deltaprop: the rate no implementation of the same products beats."""
    gemm_limit(benchmark, config)


@pytest.mark.parametrize("config", cases(PREDICTION, "predict"))
def test_gemm_limit_predict(benchmark, config):
    """The same for prediction (E): the forward products on all 10,000 rows at once."""
    gemm_limit(benchmark, config)


def gemm_limit(benchmark, config: Config) -> None:
    limit = _common.GemmLimit(config)
    with threadpool_limits(threads(), user_api="blas"):
        batches = 1 if benchmark.disabled or _common.QUICK else limit.batches_for(0.25)
        timed(benchmark, limit.run, args=(batches,))
    for left, right, out in limit.products:
        np.testing.assert_allclose(out, left @ right, rtol=1e3 * TOLERANCE[config.dtype])
    extra = {}
    if benchmark.enabled:
        # Each matmul call costs about a microsecond of Python, which deltaprop's core does not
        # pay: a noticeable part of the small products of A and B. Shown apart, not subtracted.
        overhead = limit.call_overhead()
        per_batch = benchmark.stats.stats.median / batches - overhead * len(limit.products)
        extra.update(
            call_overhead_s=overhead,
            samples_per_s_without_call_overhead=limit.batch / per_batch,
        )
    record(
        benchmark, config, "gemm-limit", batches * limit.batch,
        gemms_per_batch=len(limit.products), gemm_batch=limit.batch, **extra,
    )  # fmt: skip


# ------------------------------------------------------------------------------- consistency
# Peers that compute the same thing as deltaprop in a configuration (scikit-learn has no
# quadratic cost; the reference has no momentum and is checked in test_train).
SAME_COMPUTATION = [
    pytest.param(c, impl, id=f"{c.key}-{impl}")
    for c in TRAINING
    for impl in ("torch", "sklearn", "numpy")
    if not (impl == "sklearn" and c.cost == "quadratic")
]


@pytest.mark.benchmark(group="consistency")
@pytest.mark.parametrize(("config", "implementation"), SAME_COMPUTATION)
def test_same_steps(benchmark, config, implementation):
    """Three mini-batches in storage order from the same weights: the same parameters after.

    Three, so that momentum (whose first step is plain SGD) is exercised too.
    """
    require(implementation)
    X, Y, labels = training_rows(config, 3 * config.batch_size)
    start = initial_network(config.key)
    ours = peers.make("deltaprop", config, X, Y, labels, start)
    theirs = peers.make(implementation, config, X, Y, labels, start)

    def both():
        ours.reset()
        theirs.reset()
        return ours.epoch_in_order(), theirs.epoch_in_order()

    our_cost, their_cost = benchmark.pedantic(both)

    weights, biases = theirs.parameters()
    expected_weights, expected_biases = ours.parameters()
    assert not np.array_equal(expected_weights[0], start.weights[0])
    assert_layers_close(weights, expected_weights, config.dtype, "weights")
    assert_layers_close(biases, expected_biases, config.dtype, "biases")
    if implementation != "sklearn":  # scikit-learn's loss_ adds its L2 term
        assert their_cost == pytest.approx(our_cost, rel=10 * TOLERANCE[config.dtype])
    benchmark.extra_info.update(config=config.key, implementation=implementation, check=True)


# ------------------------------------------------------------------------------- memory
@pytest.mark.benchmark(group="memory")
@pytest.mark.parametrize("config", TRAINING, ids=lambda c: c.key)
def test_peak_rss(benchmark, config, tmp_path_factory):
    """Peak RSS of one deltaprop training epoch, in a fresh process (see memory.py)."""
    rows = 2 * config.batch_size if benchmark.disabled or _common.QUICK else N_TRAIN
    folder = tmp_path_factory.mktemp(f"memory-{config.key}")
    measured = benchmark.pedantic(memory.measure, args=(config, rows, folder))
    assert measured["baseline_bytes"] > measured["data_bytes"]
    assert measured["peak_increase_bytes"] >= 0
    assert np.isfinite(measured["cost"])
    benchmark.extra_info.update(config=config.key, **measured, **_common.core_builds())


# ------------------------------------------------------------------------------- time to accuracy
@pytest.mark.benchmark(group="time-to-accuracy")
def test_time_to_accuracy(benchmark):
    """C's setting to 88% test accuracy on Fashion-MNIST, deltaprop and PyTorch from the same
    weights through the same row orders: their accuracies must agree epoch by epoch."""
    smoke = benchmark.disabled or _common.QUICK
    if _common.data_source() != "fashion-mnist" and not smoke:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    implementations = [i for i in ("deltaprop", "torch") if peers.available()[i] is not None]
    runs = benchmark.pedantic(
        time_to_accuracy.run,
        kwargs={"implementations": implementations, "smoke": smoke},
    )
    ours = runs["deltaprop"]["accuracy"]
    if "torch" in runs:
        theirs = runs["torch"]["accuracy"]
        shared = min(len(ours), len(theirs))
        assert shared >= 1
        # Same computation in float32: the curves may drift apart a little, not more.
        np.testing.assert_allclose(theirs[:shared], ours[:shared], atol=0.02)
    assert all(0.0 <= a <= 1.0 for a in ours)
    benchmark.extra_info.update(
        runs=runs, absent=[i for i in ("torch",) if i not in runs], **_common.core_builds()
    )
