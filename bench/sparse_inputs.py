"""Sparse inputs: an epoch on TF-IDF-like rows, deltaprop next to scikit-learn's MLPClassifier
on the same scipy.sparse CSR X, and the peak memory of deltaprop's epoch (no dense X).

    python bench/sparse_inputs.py [--rows 20000] [--dtype float32] [--optimizers sgd adam]

The data: 20,000 rows of 50,000 features at a density of 0.2% (about 100 entries a row, row
lengths Poisson-distributed), columns drawn with Zipf-like frequencies (a vocabulary's), values
log(1 + tf) * idf with each row scaled to unit length, as ``TfidfVectorizer`` gives; 20 classes.
The network: [50000, 256, 20], ReLU, softmax + log-likelihood (MLPClassifier's), no L2
(``alpha=0``), batches of 200 (MLPClassifier's default), both from deltaprop's initial weights,
the same threads (threadpoolctl limits scikit-learn's BLAS to deltaprop's count). Each
optimizer's row: the seconds of one epoch, rows in storage order for both (deltaprop's best of
``--rounds`` epochs from the same start; scikit-learn's one ``partial_fit``), and their ratio.
The SGD row also asserts that both reach the same weights (1e-4 of the largest in float32).

The memory row runs one deltaprop epoch (Adam: the largest optimizer state) in a fresh process
that loads X from a ``.npz`` file, and reads the increase of the peak resident set (VmHWM, reset
before the epoch; OpenBLAS's buffers set apart) as bench/memory.py does: next to the budget of
7 parameter-sized arrays (Adam's two, the gradient buffer, the divergence snapshot of the
three, fit's copy of the parameters) + the buffer of W¹'s transpositions (training on
sparse X keeps W¹ transposed, cpp/sparse_training.hpp) + one batch's workspace + the
one-hot targets, the row order and the check of X's structure, and next to the dense X the
epoch never makes.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

import deltaprop as dp

N_FEATURES, N_CLASSES, DENSITY, HIDDEN, BATCH = 50_000, 20, 0.002, 256, 200
RATES = {"sgd": 0.1, "momentum": 0.05, "adam": 1e-3}


def tfidf_like(n_rows: int, dtype: str, seed: int = 0) -> tuple:
    """(X, labels): the rows described in the module docstring, and classes 0..19."""
    rng = np.random.default_rng(seed)
    lengths = np.maximum(1, rng.poisson(DENSITY * N_FEATURES, n_rows))
    popularity = 1.0 / (np.arange(N_FEATURES) + 10.0)
    popularity /= popularity.sum()
    columns = rng.choice(N_FEATURES, size=int(lengths.sum()), p=popularity)
    rows = np.repeat(np.arange(n_rows), lengths)
    counts = scipy.sparse.csr_matrix(
        (np.ones(columns.size), (rows, columns)), shape=(n_rows, N_FEATURES)
    )
    counts.sum_duplicates()  # repeated words: term counts
    document_frequency = np.bincount(counts.indices, minlength=N_FEATURES)
    idf = np.log((1 + n_rows) / (1 + document_frequency)) + 1
    counts.data = np.log1p(counts.data) * idf[counts.indices]
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    X = scipy.sparse.diags(1 / norms) @ counts
    return X.tocsr().astype(dtype), rng.integers(0, N_CLASSES, n_rows)


def network(dtype: str) -> dp.Network:
    return dp.Network(
        [N_FEATURES, HIDDEN, N_CLASSES], activation="relu", output="softmax",
        cost="log_likelihood", dtype=dtype, seed=0,
    )  # fmt: skip


def optimizer(name: str):
    return dp.optim.get(name, lr=RATES[name])


def deltaprop_epoch(X, y, name: str, dtype: str, rounds: int) -> tuple[float, dp.Network]:
    """The best seconds of one epoch over `rounds` from the same start, and the network."""
    net = network(dtype)
    start, best = net.params.copy(), np.inf
    for _ in range(rounds):
        net.params[...] = start
        began = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=BATCH, optimizer=optimizer(name), shuffle=False)
        best = min(best, time.perf_counter() - began)
    return best, net


def sklearn_epoch(X, y, name: str, start: dp.Network) -> tuple[float, MLPClassifier]:
    """The seconds of one MLPClassifier epoch (partial_fit) from `start`'s weights."""
    model = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,), solver="adam" if name == "adam" else "sgd",
        learning_rate_init=RATES[name], momentum=0.9 if name == "momentum" else 0.0,
        nesterovs_momentum=False, batch_size=BATCH, alpha=0.0, shuffle=False, random_state=0,
    )  # fmt: skip
    with threadpool_limits(dp.get_num_threads(), user_api="blas"):
        model.partial_fit(X[:BATCH], y[:BATCH], classes=np.arange(N_CLASSES))
        for coef, intercept, W, b in zip(model.coefs_, model.intercepts_, start.weights,
                                         start.biases):  # fmt: skip
            coef[...], intercept[...] = W.T, b
        vars(model).pop("_optimizer", None)  # a fresh optimizer, as deltaprop's
        began = time.perf_counter()
        model.partial_fit(X, y)
        return time.perf_counter() - began, model


def speed_table(X, y, dtype: str, optimizers: list[str], rounds: int) -> None:
    print(f"| optimizer | deltaprop s/epoch | scikit-learn s/epoch | ratio | rows {X.shape[0]:,},"
          f" nnz {X.nnz:,}, {dtype} |")  # fmt: skip
    print("|---|---:|---:|---:|---|")
    for name in optimizers:
        seconds, net = deltaprop_epoch(X, y, name, dtype, rounds)
        peer_seconds, model = sklearn_epoch(X, y, name, network(dtype))
        note = ""
        if name == "sgd":
            W, peer_W = net.weights[0], model.coefs_[0].T
            difference = float(np.abs(W - peer_W).max() / np.abs(W).max())
            assert difference < 1e-4, f"the SGD weights differ by {difference:.2e}"
            note = f"same weights after the epoch ({difference:.1e} of the largest)"
        print(f"| {name} | {seconds:.2f} | {peer_seconds:.2f} | {peer_seconds / seconds:.1f}x"
              f" | {note} |")  # fmt: skip


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        return 1024 * int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1))


def _memory_child(path: str, dtype: str) -> dict:
    X = scipy.sparse.load_npz(path)
    y = np.random.default_rng(0).integers(0, N_CLASSES, X.shape[0])
    net, adam = network(dtype), optimizer("adam")
    baseline = _status_bytes("VmRSS")
    # OpenBLAS keeps per-thread buffers for the process's life (set apart, as memory.py
    # does): the GEMMs of a batch on a throw-away network, whose own memory is given back.
    network(dtype).gradients(X[:BATCH], y[:BATCH])
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    openblas_buffers = _status_bytes("VmRSS") - baseline
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # the high-water mark starts again from the current RSS
    net.fit(X, y, epochs=1, batch_size=BATCH, optimizer=adam, seed=0)
    size, P = np.dtype(dtype).itemsize, net.params.size
    # Adam's two arrays, the gradient buffer, the divergence snapshot of the parameters and
    # both arrays, fit's copy of the parameters (the first epoch checks X); z, a, δ and the
    # gathered targets of one batch; the one-hot targets and the epoch's row order; the
    # check of X's structure (its column steps, an array like its indices).
    batch = 3 * BATCH * (HIDDEN + N_CLASSES) + BATCH * N_CLASSES
    budget = ((1 + 2 + 1 + 3) * P + batch + len(y) * N_CLASSES) * size + 8 * len(y)
    budget += X.indices.nbytes + N_FEATURES * HIDDEN * size  # the transpositions' buffer
    return {
        "increase": _status_bytes("VmHWM") - baseline - openblas_buffers,
        "openblas_buffers": openblas_buffers,
        "budget": budget,
        "sparse_X": X.data.nbytes + X.indices.nbytes + X.indptr.nbytes,
        "dense_X": X.shape[0] * X.shape[1] * size,
    }


def memory_row(X, dtype: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/X.npz"
        scipy.sparse.save_npz(path, X, compressed=False)
        command = [sys.executable, __file__, "--memory-child", path, "--dtype", dtype]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
    found = json.loads(child.stdout.splitlines()[-1])
    mb = {key: value / 2**20 for key, value in found.items()}
    print()
    print("| one Adam epoch | peak RSS increase | budget | OpenBLAS buffers (set apart) |"
          " sparse X | dense X (never made) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| deltaprop | {mb['increase']:.0f} MB | {mb['budget']:.0f} MB | "
          f"{mb['openblas_buffers']:.0f} MB | {mb['sparse_X']:.0f} MB | "
          f"{mb['dense_X']:.0f} MB |")  # fmt: skip
    assert found["increase"] <= 1.1 * found["budget"], "the epoch took more than its budget"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "momentum", "adam"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(_memory_child(args.memory_child, args.dtype)))
        return
    X, y = tfidf_like(args.rows, args.dtype)
    speed_table(X, y, args.dtype, args.optimizers, args.rounds)
    memory_row(X, args.dtype)


if __name__ == "__main__":
    main()
