"""Prediction latency and throughput of C's network, side by side in one run: deltaprop,
onnxruntime on deltaprop's ONNX export (1 and 2 intra-op threads), PyTorch and scikit-learn.

Groups: ``predict-1-row`` (one test image; onnxruntime with I/O binding, its fastest path for
one row: input and output bound once, ``run_with_iobinding`` timed) and ``predict-10000-rows``
(the 10,000 test images; onnxruntime's ``InferenceSession.run``). Calibrated mode: every call
computes the same thing. Each benchmark asserts its outputs equal deltaprop's (float32, 1e-5
of the largest). deltaprop, PyTorch and scikit-learn use ``threads()`` BLAS threads (2 on the
reference machine). Run (onnxruntime comes with ``pip install ".[onnx]"``)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/test_interop.py \
        --benchmark-only --benchmark-columns=median,iqr,min,rounds
"""

from __future__ import annotations

import numpy as np
import peers
import pytest
from _common import CONFIGS, data, make_network, threads, watching_the_machine
from threadpoolctl import threadpool_limits

CONFIG = CONFIGS["C"]
IMPLEMENTATIONS = ["deltaprop", "onnxruntime-1-thread", "onnxruntime-2-threads", "torch", "sklearn"]
ROWS = {"predict-1-row": 1, "predict-10000-rows": 10_000}


@pytest.fixture(scope="module")
def network():
    return make_network(CONFIG)


@pytest.fixture(scope="module")
def onnx_path(network, tmp_path_factory):
    pytest.importorskip("onnx", reason='onnx: pip install ".[onnx]"')
    path = tmp_path_factory.mktemp("onnx") / "C.onnx"
    network.to_onnx(path)
    return path


def onnxruntime_predictor(path, n_threads: int, X: np.ndarray):
    """A function computing the network's outputs for X with onnxruntime, and its output."""
    ort = pytest.importorskip("onnxruntime", reason='onnxruntime: pip install ".[onnx]"')
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = n_threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    if len(X) > 1:
        return lambda: session.run(None, {"X": X})[0]
    out = np.empty((len(X), CONFIG.sizes[-1]), dtype=X.dtype)
    binding = session.io_binding()
    binding.bind_ortvalue_input("X", ort.OrtValue.ortvalue_from_numpy(X))
    binding.bind_ortvalue_output("output", ort.OrtValue.ortvalue_from_numpy(out))

    def run():
        session.run_with_iobinding(binding)
        return out

    return run


def predictor(implementation: str, network, onnx_path, X: np.ndarray):
    if implementation.startswith("onnxruntime"):
        return onnxruntime_predictor(onnx_path, 1 if "1-thread" in implementation else 2, X)
    if implementation == "deltaprop":
        return lambda: network.predict(X)
    if peers.available()[implementation] is None:
        pytest.skip(f"{implementation}: not installed (pip install '.[bench]')")
    peer = peers.make(implementation, CONFIG, data("train", CONFIG.dtype).first(CONFIG.batch_size))
    if implementation == "sklearn":  # threadpool_limits around the timing, not in each call
        return lambda: peer.model.predict_proba(X)
    return lambda: peer.predict(X)


@pytest.mark.parametrize("group", list(ROWS))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_predict(benchmark, network, onnx_path, group, implementation):
    benchmark.group = group
    X = np.ascontiguousarray(data("test", CONFIG.dtype).X[: ROWS[group]])
    run = predictor(implementation, network, onnx_path, X)
    with threadpool_limits(threads(), user_api="blas"), watching_the_machine(benchmark.extra_info):
        outputs = benchmark(run)
    expected = network.predict(X)
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    benchmark.extra_info.update(implementation=implementation, rows=len(X), threads=threads())
    if benchmark.enabled:
        benchmark.extra_info["median_s"] = benchmark.stats.stats.median
