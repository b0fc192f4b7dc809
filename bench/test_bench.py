"""deltaprop against PyTorch, scikit-learn, NumPy and the pure-Python reference in configurations
A-E, each configuration's GEMM limit measured in the same run, peak memory and time to accuracy.
Every benchmark asserts the result it timed.

Groups: ``A-train`` .. ``D-train`` (one epoch per implementation and the limit), ``E-predict``
(the 10,000 test images), ``consistency`` (not a timing: each peer and deltaprop take the same
three mini-batches and must end with the same parameters), ``memory``, ``time-to-accuracy``.
Each benchmark leaves what report.py prints in ``extra_info``; a peer that is not installed is
skipped, and the report lists it as absent.
"""

from __future__ import annotations

import contextlib
import functools
import time

import memory
import numpy as np
import peers
import pytest
import time_to_accuracy
from _common import (
    BFLOAT16_IMPLEMENTATIONS,
    CONFIGS,
    IMPLEMENTATIONS,
    QUICK,
    SEED,
    TOLERANCE,
    Config,
    GemmLimit,
    core_builds,
    data,
    data_source,
    epoch_order,
    make_network,
    threads,
    watching_the_machine,
)
from threadpoolctl import threadpool_limits

import deltaprop as dp

# Rounds of pedantic mode, after one warm-up round (none for the pure-Python reference, whose
# rounds only estimate a rate 1e3-1e4 times lower). Not the calibrated mode: each round must
# start from the same parameters and a fresh optimizer state (deltaprop's after a fresh timing
# of the GEMM limit), which only pedantic's untimed setup gives; an epoch is long enough to be
# timed alone.
ROUNDS, REFERENCE_ROUNDS = (1, 1) if QUICK else (5, 3)
TRAINING = [c for c in CONFIGS.values() if not c.predict and c.precision == "highest"]
BFLOAT16_TRAINING = [c for c in CONFIGS.values() if not c.predict and c.precision == "bfloat16"]


def group(config: Config) -> str:
    return f"{config.key}-{'predict' if config.predict else 'train'}"


# Module-scoped, so that pytest runs everything of one configuration together: the figures
# compared with each other are measured minutes apart at most.
@pytest.fixture(
    scope="module",
    params=[
        pytest.param(c, id=c.key, marks=pytest.mark.benchmark(group=group(c)))
        for c in CONFIGS.values()
    ],
)
def config(request) -> Config:
    return request.param


def require(implementation: str) -> None:
    if peers.available()[implementation] is None:
        pytest.skip(f"{implementation}: not installed (pip install '.[bench]'); reported absent")


@functools.cache
def initial_network(key: str) -> dp.Network:
    """The network every implementation of configuration `key` starts from."""
    return make_network(CONFIGS[key])


def timed(benchmark, function, args, setup, reference: bool):
    """pedantic rounds, with the other processes' CPU use meanwhile in extra_info."""
    rounds, warmup_rounds = (REFERENCE_ROUNDS, 0) if reference else (ROUNDS, 1)
    watching = watching_the_machine(benchmark.extra_info)
    with watching if benchmark.enabled else contextlib.nullcontext():
        return benchmark.pedantic(
            function, args=args, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds
        )


def record(benchmark, config: Config, implementation: str, rows: int, **extra) -> None:
    """Leave what report.py needs in extra_info; each record carries the whole configuration, so
    that the report can print it whichever of its benchmarks ran."""
    benchmark.extra_info.update(
        config=config.key,
        implementation=implementation,
        rows_timed=rows,
        version=peers.available().get(implementation),
        setting={
            "title": config.title, "sizes": list(config.sizes), "dtype": config.dtype,
            "batch_size": config.batch_size, "flops_per_sample": config.flops_per_sample,
            "targets": config.targets, "notes": list(config.notes), "threads": threads(),
            "data": data_source(), "quick": QUICK, "peers": peers.available(),
        },
        **core_builds(),
        **extra,
    )  # fmt: skip
    if benchmark.enabled:
        benchmark.extra_info["samples_per_s"] = rows / benchmark.stats.stats.median


def assert_layers_close(actual, expected, dtype: str, what: str) -> None:
    """Each layer within TOLERANCE of the largest |value| of the expected layer."""
    assert len(actual) == len(expected), what
    for l, (a, e) in enumerate(zip(actual, expected)):
        atol = TOLERANCE[dtype] * np.abs(e).max()
        np.testing.assert_allclose(a, e, rtol=0, atol=atol, err_msg=f"{what}[{l}]")


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(axis=1) == labels))


class InterleavedLimit:
    """A setup that first times the GEMM limit again, so that deltaprop's fraction of the limit
    compares rates measured seconds apart: on a shared virtual machine the rate of the same GEMMs
    drifts by tens of percent within minutes."""

    SECONDS = 0.2
    # numpy's OpenBLAS threads spin ~0.1 s after its last call: let them sleep before the round.
    SETTLE_SECONDS = 0.15

    def __init__(self, config: Config, then=None) -> None:
        self.limit, self.then, self.rates = GemmLimit(config), then, []

    def __call__(self) -> None:
        self.rates.append(self.limit.samples_per_s(self.SECONDS))
        time.sleep(self.SETTLE_SECONDS)
        if self.then is not None:
            self.then()


def notes_for(config: Config, implementation: str, rows: int) -> list[str]:
    """What the report says beside an implementation's figure."""
    if implementation == "reference":
        notes = [f"extrapolated from {rows} rows"]
        if not config.predict and config.optimizer != "sgd":
            notes.append("plain SGD (the reference has no momentum)")
        if not config.predict and rows < config.batch_size:
            notes.append(f"one batch of {rows}: the update's share is overweighted")
        return notes
    if implementation == "sklearn" and config.cost == "quadratic":
        return ["binary log-loss (scikit-learn has no quadratic cost)"]
    if implementation == "torch" and not config.predict:
        return ["torch.optim.SGD defaults (for-loop, not foreach/fused, on CPU)"]
    return []


# ------------------------------------------------------------------------------------ A-E
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_speed(benchmark, config, implementation):
    """One training epoch (A-D) or the prediction of the test images (E)."""
    require(implementation)
    if config.precision == "bfloat16" and implementation not in BFLOAT16_IMPLEMENTATIONS:
        pytest.skip(f"{implementation}: computes in no bfloat16 (reported as not in this run)")
    rows = config.rows_for(implementation, smoke=benchmark.disabled)
    # Not in the bfloat16 rows: PyTorch's matmul, their limit, timed between deltaprop's
    # rounds ran at half its rate alone (its OpenMP threads and the core's team meet).
    interleave = (
        implementation == "deltaprop" and benchmark.enabled and config.precision == "highest"
    )
    extra = (predict_rounds if config.predict else train_rounds)(
        benchmark, config, implementation, rows, interleave
    )
    notes = notes_for(config, implementation, rows) + extra.pop("notes", [])
    record(benchmark, config, implementation, rows, notes=notes, **extra)


def train_rounds(benchmark, config, implementation, rows, interleave) -> dict:
    """Time epochs from the common start; check the cost fell and the parameters moved."""
    training = data("train", config.dtype).first(rows)
    X, Y, labels = training.X, training.Y, training.labels
    start = initial_network(config.key)
    peer = peers.make(implementation, config, training)
    if implementation == "reference":
        peer.prepare(SEED)
    setup = InterleavedLimit(config, then=peer.reset) if interleave else peer.reset
    cost = timed(benchmark, peer.epoch, (SEED,), setup, implementation == "reference")

    weights, biases = peer.parameters()
    assert all(np.isfinite(p).all() for p in weights + biases)
    assert not np.array_equal(weights[0], start.weights[0]), "the weights did not change"
    learned = rows >= 10 * config.batch_size  # enough batches to have learnt something
    if implementation == "sklearn":
        assert accuracy(peer.predict(X), labels) > accuracy(start.predict(X), labels) or not learned
    elif implementation == "reference":  # against deltaprop's plain SGD, same rows and order
        check = dp.Network.from_params(start.weights, start.biases, **config.names)
        order = epoch_order(rows, SEED)
        check.fit(
            X[order], Y[order], epochs=1, batch_size=config.batch_size, lr=config.lr,
            lmbda=config.lmbda, shuffle=False,
        )  # fmt: skip
        assert_layers_close(weights, check.weights, config.dtype, "weights")
        assert_layers_close(biases, check.biases, config.dtype, "biases")
    else:  # the cost measured during the epoch fell below the start's
        assert cost < start.cost(X, Y) or not learned
    return interleaved_figures(setup, peer, rows) if interleave else {}


def interleaved_figures(limit: InterleavedLimit, peer, rows: int) -> dict:
    """The limit timed between deltaprop's rounds, and deltaprop's rate as fit times an epoch
    (without its once-per-call input checks, which a fit of many epochs pays once)."""
    inside_fit = rows / float(np.median(peer.fit_seconds))
    return {
        "interleaved_limit_samples_per_s": float(np.median(limit.rates)),
        "samples_per_s_inside_fit": inside_fit,
        "notes": [f"{inside_fit:,.0f} samples/s inside fit, without its per-call input checks"],
    }


def predict_rounds(benchmark, config, implementation, rows, interleave) -> dict:
    """Time the prediction of the first `rows` test images; check it equals deltaprop's."""
    X, start = data("test", config.dtype).X[:rows], initial_network(config.key)
    # Built on one training batch: scikit-learn's model takes its shapes from data.
    peer = peers.make(implementation, config, data("train", config.dtype).first(config.batch_size))
    setup = InterleavedLimit(config) if interleave else None
    outputs = timed(benchmark, peer.predict, (X,), setup, implementation == "reference")

    assert outputs.shape == (rows, config.sizes[-1])
    # Probabilities: compared in absolute terms (rows sum to 1); PyTorch's autocast also
    # rounds each product's result to bfloat16.
    atol = 0.05 if config.precision == "bfloat16" else 1e3 * TOLERANCE[config.dtype]
    np.testing.assert_allclose(outputs, start.predict(X), rtol=0, atol=atol)
    return {"interleaved_limit_samples_per_s": float(np.median(setup.rates))} if interleave else {}


def test_gemm_limit(benchmark, config):
    """numpy's matmul on one batch's GEMMs with deltaprop's thread count: the rate no
    implementation of the same products beats. Calibrated mode: no state to reset."""
    if config.precision == "bfloat16":
        require("torch")
    limit = GemmLimit.for_config(config)
    with threadpool_limits(threads(), user_api="blas"), watching_the_machine(benchmark.extra_info):
        benchmark(limit.run)
    for left, right, out in limit.products:
        expected, rtol = left @ right, 1e3 * TOLERANCE[config.dtype]
        if config.precision == "bfloat16":
            out, expected, rtol = out.float().numpy(), expected.float().numpy(), 2**-7
        np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    extra = {"gemms_per_batch": len(limit.products), "gemm_batch": limit.batch}
    if benchmark.enabled:
        # Each matmul call costs about a microsecond of Python, which deltaprop's core does not
        # pay: a noticeable part of A's and B's small products. Shown apart, not subtracted.
        overhead = GemmLimit.call_overhead()
        per_batch = benchmark.stats.stats.median - overhead * len(limit.products)
        extra["call_overhead_s"] = overhead
        extra["samples_per_s_without_call_overhead"] = limit.batch / per_batch
    record(benchmark, config, "gemm-limit", limit.batch, **extra)


# ------------------------------------------------------------------------------------ consistency
@pytest.mark.benchmark(group="consistency")
@pytest.mark.parametrize(
    ("config", "implementation"),
    [
        pytest.param(c, impl, id=f"{c.key}-{impl}")
        for c in TRAINING
        for impl in ("torch", "sklearn", "numpy")
        if not (impl == "sklearn" and c.cost == "quadratic")  # it has no quadratic cost
    ],
)
def test_same_steps(benchmark, config, implementation):
    """Three mini-batches in storage order from the same weights (three, so that momentum,
    whose first step is plain SGD, is exercised): the same parameters after. The benchmark
    fixture only makes --benchmark-only run it."""
    require(implementation)
    rows = data("train", config.dtype).first(3 * config.batch_size)
    start = initial_network(config.key)
    ours, theirs = (peers.make(i, config, rows) for i in ("deltaprop", implementation))
    our_cost, their_cost = benchmark.pedantic(lambda: (ours.epoch(None), theirs.epoch(None)))

    (weights, biases), (expected_weights, expected_biases) = theirs.parameters(), ours.parameters()
    assert not np.array_equal(expected_weights[0], start.weights[0])
    assert_layers_close(weights, expected_weights, config.dtype, "weights")
    assert_layers_close(biases, expected_biases, config.dtype, "biases")
    if implementation != "sklearn":  # scikit-learn's loss_ adds its L2 term
        assert their_cost == pytest.approx(our_cost, rel=10 * TOLERANCE[config.dtype])
    benchmark.extra_info.update(config=config.key, implementation=implementation, check=True)


# ------------------------------------------------------------------------------------ memory
@pytest.mark.benchmark(group="memory")
@pytest.mark.parametrize("config", TRAINING + BFLOAT16_TRAINING, ids=lambda c: c.key)
def test_peak_rss(benchmark, config):
    """Peak RSS of one deltaprop training epoch in a fresh process (see memory.py)."""
    rows = config.rows_for("memory", smoke=benchmark.disabled)  # all rows unless smoke or QUICK
    measured = benchmark.pedantic(memory.measure, args=(config, rows))
    assert measured["baseline_bytes"] > measured["data_bytes"]
    assert measured["peak_increase_bytes"] >= 0
    assert np.isfinite(measured["cost"])
    benchmark.extra_info.update(config=config.key, **measured, **core_builds())


# ------------------------------------------------------------------------------ time to accuracy
@pytest.mark.benchmark(group="time-to-accuracy")
def test_time_to_accuracy(benchmark):
    """C's setting to the target test accuracy, deltaprop and PyTorch from the same weights
    through the same row orders: their accuracies must agree epoch by epoch."""
    smoke = benchmark.disabled or QUICK
    if data_source() != "fashion-mnist" and not smoke:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    runs = benchmark.pedantic(time_to_accuracy.run, kwargs={"smoke": smoke})
    ours = runs["deltaprop"]["accuracy"]
    assert all(0.0 <= a <= 1.0 for a in ours)
    if "torch" in runs:  # float32: the curves may drift apart a little, not more
        theirs = runs["torch"]["accuracy"]
        shared = min(len(ours), len(theirs))
        np.testing.assert_allclose(theirs[:shared], ours[:shared], atol=0.02)
    benchmark.extra_info.update(runs=runs, **core_builds())
