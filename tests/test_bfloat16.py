"""matmul_precision="bfloat16": the core's products against the float64 reference, against
an exact emulation of bfloat16 operands, native against fallback, and the precision's
life in a network (attribute, files, pickles, ONNX, training, estimators).

The tolerance against the float64 reference. bfloat16 keeps 8 significant bits, so
rounding an operand to nearest has relative error at most u = 2^-8. A product of two
rounded operands is exact in float32 (8 + 8 bits), so one GEMM with inner dimension K
and float32 accumulation errs by at most (2u + u^2 + gamma_K) |A| |B| entry by entry,
gamma_K = K 2^-24 / (1 - K 2^-24) (Higham, Accuracy and Stability, 3.5). A gradient
goes through 3L - 1 GEMMs (L forward, L - 1 of BP2, L of BP4) whose first-order errors
add, and the activations' derivatives are at most 1 in size: norm-wise,
|g_bf16 - g_64| <= (3L - 1) (2u + u^2 + gamma_K) |g_64|. Measured against the gradient's
norm rather than |A| |B| the bound could fail where a sum cancels; on these random
networks the error stays below a quarter of it.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import deltaprop as dp
from conftest import (
    COMBINATION_IDS,
    COMBINATIONS,
    MIXED,
    MIXED_IDS,
    MIXED_SIZES,
    MIXED_SLOPES,
    random_sizes,
    random_targets,
    reference_gradients,
)
from deltaprop import _precision

U = 2.0**-8
native_only = pytest.mark.skipif(
    not dp.bfloat16_native(), reason="this CPU has no native bfloat16 (the fallback is tested)"
)


def bf16(values) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest, ties to even), returned as float64."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


def gemm_bound(L: int, K: int) -> float:
    gamma = K * 2.0**-24 / (1 - K * 2.0**-24)
    return (3 * L - 1) * (2 * U + U * U + gamma)


def flat(dW, db) -> np.ndarray:
    return np.concatenate([np.concatenate([np.ravel(W), np.ravel(b)]) for W, b in zip(dW, db)])


def bf16_network(sizes, **options) -> dp.Network:
    return dp.Network(sizes, dtype="float32", matmul_precision="bfloat16", **options)


@pytest.fixture
def fallback():
    dp._core.force_bfloat16_fallback(True)
    yield
    dp._core.force_bfloat16_fallback(False)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("hidden", "output", "cost"), COMBINATIONS, ids=COMBINATION_IDS)
def test_gradients_within_the_derived_bound_of_the_float64_reference(hidden, output, cost, seed):
    rng = np.random.default_rng(300 + seed)
    sizes = random_sizes(rng, output)
    net = bf16_network(sizes, activation=hidden, output=output, cost=cost, seed=seed)
    n = int(rng.integers(1, 8))
    X = rng.normal(size=(n, sizes[0])).astype(np.float32)
    Y = random_targets(rng, cost, n, sizes[-1]).astype(np.float32)
    cost_value, dW, db = net.gradients(X, Y)
    ref_cost, ref_dW, ref_db = reference_gradients(net, X, Y)
    g, ref = flat(dW, db), flat(ref_dW, ref_db)
    bound = gemm_bound(len(sizes) - 1, max(max(sizes), n))
    assert np.linalg.norm(g - ref) <= bound * np.linalg.norm(ref) + 1e-30
    assert cost_value == pytest.approx(ref_cost, rel=bound, abs=1e-30)
    # Not float32's answer: the operands were rounded (unless every value is a bfloat16).
    net.matmul_precision = "highest"
    assert np.abs(flat(*net.gradients(X, Y)[1:]) - ref).max() <= 1e-3 * np.abs(ref).max() + 1e-30


def mixed_problem(hidden, output, cost):
    """A bfloat16 network with an activation per hidden layer, and the first of the data
    sets drawn whose z^l all lie 0.01 or more from the kink of their relu or leaky relu: a
    z that bfloat16's rounding moves across the kink changes the derivative there by a
    step, which no bound on the rounding of the products covers."""
    sizes = [*MIXED_SIZES, 3]
    net = bf16_network(sizes, activation=hidden, leaky_slope=MIXED_SLOPES, output=output,
                       cost=cost, seed=4)  # fmt: skip
    kinked = [l for l, name in enumerate(hidden) if name in ("relu", "leaky_relu")]
    highest = dp.Network.from_params(
        net.weights, net.biases, activation=hidden, leaky_slope=MIXED_SLOPES, output=output,
        cost=cost,
    )  # fmt: skip
    for seed in range(400, 500):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(6, sizes[0])).astype(np.float32)
        zs, _ = highest.forward(X.astype(np.float64), return_layers=True)
        if min(np.abs(zs[l]).min() for l in kinked) >= 0.01:
            return net, X, random_targets(rng, cost, 6, sizes[-1]).astype(np.float32)
    raise AssertionError("no data set of the hundred stays away from the kinks")


@pytest.mark.parametrize(("hidden", "output", "cost"), MIXED, ids=MIXED_IDS)
def test_mixed_activations_within_the_derived_bound_of_the_float64_reference(hidden, output, cost):
    net, X, Y = mixed_problem(hidden, output, cost)
    _, dW, db = net.gradients(X, Y)
    g, ref = flat(dW, db), flat(*reference_gradients(net, X, Y)[1:])
    bound = gemm_bound(len(net.sizes) - 1, max(net.sizes))
    assert np.linalg.norm(g - ref) <= bound * np.linalg.norm(ref) + 1e-30
    zs, _ = net.forward(X, return_layers=True)
    deltas = net.deltas(X, Y)
    assert [z.shape for z in zs] == [d.shape for d in deltas] == [(6, n) for n in net.sizes[1:]]


def two_layer_problem(rng, B=8, sizes=(37, 23, 5)):
    net = bf16_network(list(sizes), activation="identity", output="identity", seed=1)
    X = rng.normal(size=(B, sizes[0])).astype(np.float32)
    Y = rng.normal(size=(B, sizes[-1])).astype(np.float32)
    return net, X, Y


def emulated_gradients(net, X, Y):
    """Identity layers, quadratic cost: every GEMM of BP1-BP4 on rounded operands, in float64."""
    (W1, W2), (b1, b2) = net.weights, net.biases
    a1 = bf16(X) @ bf16(W1).T + b1
    a2 = bf16(a1) @ bf16(W2).T + b2
    delta2 = a2 - Y  # BP1 with sigma' = 1
    delta1 = bf16(delta2) @ bf16(W2)  # BP2
    B = X.shape[0]
    dW2, dW1 = bf16(delta2).T @ bf16(a1) / B, bf16(delta1).T @ bf16(X) / B  # BP4
    return a2, [dW1, dW2], [delta1.mean(axis=0), delta2.mean(axis=0)]  # BP3


@pytest.mark.parametrize("path", ["native", "fallback"])
def test_every_gemm_takes_rounded_operands_and_accumulates_in_float32(rng, path, request):
    if path == "fallback":
        request.getfixturevalue("fallback")
    elif not dp.bfloat16_native():
        pytest.skip("this CPU has no native bfloat16")
    net, X, Y = two_layer_problem(rng)
    a2, dW, db = emulated_gradients(net, X, Y)
    # float32 accumulation over K <= 37 terms, and the rare operand whose float32 value
    # rounds the other way from its float64 emulation: far below u, the error of a
    # missing rounding.
    tol = 2e-5
    np.testing.assert_allclose(net.predict(X), a2, rtol=tol, atol=tol * np.abs(a2).max())
    _, core_dW, core_db = net.gradients(X, Y)
    for got, want in zip(core_dW + core_db, dW + db):
        assert np.linalg.norm(got - want) <= tol * np.linalg.norm(want)


@native_only
def test_native_and_fallback_agree_within_float32_summation_noise(rng, fallback):
    sizes = [300, 257, 129, 10]
    net = bf16_network(sizes, activation="relu", output="softmax", cost="log_likelihood", seed=3)
    X = rng.normal(size=(200, sizes[0])).astype(np.float32)
    y = rng.integers(0, 10, size=200)
    slow = net.predict(X), flat(*net.gradients(X, y)[1:])
    dp._core.force_bfloat16_fallback(False)
    fast = net.predict(X), flat(*net.gradients(X, y)[1:])
    for a, b in zip(slow, fast):
        assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b)
        assert not np.array_equal(a, b) or a.size < 10  # two summation orders, really


def test_a_float64_network_refuses_bfloat16():
    with pytest.raises(ValueError, match="float32 network"):
        dp.Network([3, 2], matmul_precision="bfloat16")
    net = dp.Network([3, 2])
    with pytest.raises(ValueError, match="dtype='float32'"):
        net.matmul_precision = "bfloat16"
    assert net.matmul_precision == "highest"


@pytest.mark.parametrize(
    ("value", "error"), [("bf16", ValueError), ("", ValueError), (None, TypeError), (16, TypeError)]
)
def test_bad_precisions_name_the_argument(value, error):
    with pytest.raises(error, match="matmul_precision"):
        dp.Network([3, 2], dtype="float32", matmul_precision=value)


def test_the_precision_changes_between_calls(rng):
    net = bf16_network([20, 16, 3], activation="tanh", seed=4)
    X = rng.normal(size=(50, 20)).astype(np.float32)
    in_bf16 = net.predict(X)
    net.matmul_precision = "highest"
    twin = dp.Network([20, 16, 3], activation="tanh", dtype="float32", seed=4)
    np.testing.assert_array_equal(net.predict(X), twin.predict(X))  # float32, bit for bit
    assert not np.array_equal(in_bf16, twin.predict(X))
    net.matmul_precision = "bfloat16"
    np.testing.assert_array_equal(net.predict(X), in_bf16)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_the_bfloat16_copy_of_w_follows_every_update(rng, optimizer):
    """Training in bfloat16 tracks float32 training: a stale copy of W would not. SGD's
    GEMM writes W (the next forward pass rounds it); momentum and Adam refresh the copy as
    they write W."""
    X = rng.normal(size=(256, 20)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    options = dict(activation="relu", output="softmax", cost="log_likelihood", seed=5)
    nets = [
        dp.Network([20, 32, 2], dtype="float32", matmul_precision=p, **options)
        for p in ("highest", "bfloat16")
    ]
    lr = {"sgd": 0.1, "momentum": 0.02, "adam": 0.01}[optimizer]
    for net in nets:
        net.fit(X, y, epochs=5, batch_size=16, optimizer=optimizer, lr=lr, seed=0)
    step = np.abs(nets[0].params - dp.Network([20, 32, 2], dtype="float32", **options).params)
    # Adam's step is about lr times the gradient's sign where the gradient is small, and
    # bfloat16 rounding flips some of those signs: a looser bound (a stale copy of W would
    # leave the forward pass on the initial weights, below the accuracy asserted).
    bound = {"sgd": 0.05, "momentum": 0.05, "adam": 0.2}[optimizer]
    assert np.abs(nets[0].params - nets[1].params).max() <= bound * step.max()
    assert np.mean(nets[1].predict(X).argmax(1) == y) >= 0.95


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_weights_set_after_training_are_the_ones_used(rng, optimizer):
    """The copy an update refreshed holds within one call: predict, and the next call's
    first batch, use weights the user wrote in between."""
    X = rng.normal(size=(64, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    options = dict(activation="tanh", output="softmax", cost="log_likelihood")
    net, twin = (bf16_network([12, 16, 2], seed=s, **options) for s in (11, 12))
    net.fit(X, y, epochs=1, batch_size=16, optimizer=optimizer, lr=0.01, seed=0)
    net.params[...] = twin.params
    np.testing.assert_array_equal(net.predict(X), twin.predict(X))
    for each in (net, twin):
        each.fit(X, y, epochs=1, batch_size=16, optimizer=optimizer, lr=0.01, seed=0)
    np.testing.assert_array_equal(net.predict(X), twin.predict(X))


def test_model_files_keep_the_precision_and_older_files_read_as_highest(tmp_path, rng):
    net = bf16_network([6, 5, 2], seed=6)
    X = rng.normal(size=(9, 6)).astype(np.float32)
    net.fit(X, rng.normal(size=(9, 2)), epochs=2, batch_size=3, lr=0.1, optimizer="adam")
    net.save(tmp_path / "m.npz")
    loaded = dp.load(tmp_path / "m.npz")
    assert loaded.matmul_precision == "bfloat16"
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    net.matmul_precision = "highest"
    net.save(tmp_path / "h.npz")
    # The default precision writes no field: the file is an older version's.
    assert b"matmul_precision" not in (tmp_path / "h.npz").read_bytes()
    assert dp.load(tmp_path / "h.npz").matmul_precision == "highest"
    clone = pickle.loads(pickle.dumps(loaded))
    assert clone.matmul_precision == "bfloat16"
    np.testing.assert_array_equal(clone.predict(X), loaded.predict(X))


def test_resume_continues_in_bfloat16(tmp_path, rng):
    X = rng.normal(size=(40, 6)).astype(np.float32)
    Y = rng.normal(size=(40, 2)).astype(np.float32)
    whole = bf16_network([6, 5, 2], seed=7)
    whole.fit(X, Y, epochs=4, batch_size=8, lr=0.1, seed=1)
    part = bf16_network([6, 5, 2], seed=7)
    path = tmp_path / "run.ckpt"
    part.fit(X, Y, epochs=2, batch_size=8, lr=0.1, seed=1, checkpoint=path)
    resumed = bf16_network([6, 5, 2], seed=7)
    resumed.fit(X, Y, epochs=4, batch_size=8, lr=0.1, seed=1, checkpoint=path, resume=True)
    np.testing.assert_array_equal(resumed.params, whole.params)


def test_onnx_export_is_the_float32_network(tmp_path, rng):
    ort = pytest.importorskip("onnxruntime")
    net = bf16_network([6, 5, 3], activation="relu", output="softmax", cost="log_likelihood")
    X = rng.normal(size=(11, 6)).astype(np.float32)
    net.to_onnx(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (exported,) = session.run(None, {"X": X})
    bf16_prediction = net.predict(X)
    net.matmul_precision = "highest"
    np.testing.assert_allclose(exported, net.predict(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exported, bf16_prediction, atol=gemm_bound(2, 6))


def test_objective_and_lbfgs_compute_in_bfloat16(rng):
    pytest.importorskip("scipy")
    X = rng.normal(size=(64, 10)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    options = dict(activation="tanh", output="softmax", cost="log_likelihood", seed=8)
    net = bf16_network([10, 8, 2], **options)
    twin = dp.Network([10, 8, 2], dtype="float32", **options)
    value, gradient = net.objective(X, y)
    ref_value, ref_gradient = twin.objective(X, y)
    assert value != ref_value
    bound = gemm_bound(2, 64)
    assert abs(value - ref_value) <= bound * abs(ref_value)
    assert np.linalg.norm(gradient - ref_gradient) <= bound * np.linalg.norm(ref_gradient)
    net.fit(X, y, optimizer="lbfgs", epochs=30)
    assert np.mean(net.predict(X).argmax(1) == y) >= 0.95


def test_the_fallback_warns_once(fallback, monkeypatch):
    monkeypatch.setattr(_precision, "_warned", False)
    with pytest.warns(dp.Bfloat16FallbackWarning, match="no native bfloat16"):
        bf16_network([3, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bf16_network([3, 2]).matmul_precision = "bfloat16"


def test_without_onednn_asking_names_the_extra_and_a_saved_model_still_loads(tmp_path, monkeypatch):
    net = bf16_network([3, 2], seed=9)
    net.save(tmp_path / "m.npz")
    monkeypatch.setattr(_precision, "_load_onednn", lambda: False)
    monkeypatch.setattr(_precision, "_warned", False)
    with pytest.raises(ImportError, match=r"deltaprop\[bf16\]"):
        bf16_network([3, 2])
    with pytest.raises(ImportError, match=r"deltaprop\[bf16\]"):
        dp.Network([3, 2], dtype="float32").matmul_precision = "bfloat16"
    dp._core.force_bfloat16_fallback(True)  # as without oneDNN: the fallback computes
    try:
        with pytest.warns(dp.Bfloat16FallbackWarning, match=r"deltaprop\[bf16\]"):
            loaded = dp.load(tmp_path / "m.npz")
        assert loaded.matmul_precision == "bfloat16"
    finally:
        dp._core.force_bfloat16_fallback(False)


def test_a_file_claiming_bfloat16_for_float64_is_refused(tmp_path):
    from deltaprop import _container

    net = bf16_network([3, 2], seed=10)
    net.save(tmp_path / "m.npz")
    fields, arrays = _container.read(tmp_path / "m.npz", lambda f: {"params": (np.dtype("<f4"), 8)})
    fields["dtype"] = "float64"
    _container.write(tmp_path / "bad.npz", fields, {"params": arrays["params"].astype(np.float64)})
    with pytest.raises(dp.ModelFormatError, match="matmul_precision"):
        dp.load(tmp_path / "bad.npz")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_take_matmul_precision(rng):
    pytest.importorskip("sklearn")
    from sklearn.base import clone

    from deltaprop.sklearn import DeltapropClassifier

    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    options = dict(
        hidden_layer_sizes=(8,),
        max_iter=50,
        learning_rate_init=0.01,
        random_state=0,
        dtype="float32",
    )
    model = DeltapropClassifier(matmul_precision="bfloat16", **options).fit(X, y)
    assert model.network_.matmul_precision == "bfloat16"
    assert clone(model).get_params()["matmul_precision"] == "bfloat16"
    twin = DeltapropClassifier(**options).fit(X, y)
    assert not np.array_equal(model.predict_proba(X), twin.predict_proba(X))
    assert model.score(X, y) >= 0.9 and abs(model.score(X, y) - twin.score(X, y)) <= 0.05
    model.set_params(matmul_precision="highest", warm_start=True, max_iter=1).fit(X, y)
    assert model.network_.matmul_precision == "highest"
    with pytest.raises(ValueError, match="dtype='float32'"):
        DeltapropClassifier(matmul_precision="bfloat16").fit(X, y)
    with pytest.raises(ValueError, match="matmul_precision"):
        DeltapropClassifier(matmul_precision="half", dtype="float32").fit(X, y)


def test_the_command_line_trains_and_saves_in_bfloat16(tmp_path, capsys):
    from deltaprop import cli

    threads = dp.get_num_threads()
    argv = ["train", "--epochs", "2", "--dtype", "float32", "--matmul-precision", "bfloat16"]
    try:
        assert cli.main([*argv, "--threads", "1", "--save", str(tmp_path / "m.npz")]) == 0
        assert dp.get_num_threads() == 1
    finally:
        dp.set_num_threads(threads)
    assert "epoch 2/2" in capsys.readouterr().out
    assert dp.load(tmp_path / "m.npz").matmul_precision == "bfloat16"
    assert cli.main(["train", "--epochs", "1", "--matmul-precision", "bfloat16"]) == 2
    assert "needs --dtype float32" in capsys.readouterr().err
    assert cli.main([*argv, "--threads", "0"]) == 2


NO_POOL_BESIDE_THE_TEAM = """
import os
import numpy as np
import deltaprop as dp

def threads():
    return len(os.listdir("/proc/self/task"))

dp.set_num_threads(2)
rng = np.random.default_rng(0)
X, y = rng.normal(size=(2048, 300)).astype(np.float32), rng.integers(0, 10, 2048)
net = dp.Network([300, 512, 256, 10], activation="relu", output="softmax",
                 cost="log_likelihood", dtype="float32", seed=0)
net.fit(X, y, epochs=1, batch_size=256)  # the team's worker starts
before = threads()
net.matmul_precision = "bfloat16"
net.fit(X, y, epochs=2, batch_size=256)
net.predict(X)
print(before, threads())
"""


@native_only
def test_onednn_runs_on_the_team_and_starts_no_pool_of_its_own():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", NO_POOL_BESIDE_THE_TEAM],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    before, after = map(int, done.stdout.split())
    assert after == before


@pytest.mark.parametrize("instructions", ["scalar", "avx2", "avx512"])
def test_rounding_to_bfloat16_is_nearest_ties_to_even_with_every_instruction_set(instructions):
    rng = np.random.default_rng(12)
    special = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1e-39, 3.4e38, -3.4e38],
        dtype=np.float32,
    )
    high_halves = rng.integers(0, 2**16, 64, dtype=np.uint32)
    ties = (high_halves << 16 | 0x8000).view(np.float32)  # halfway between two bfloat16s
    random_bits = rng.integers(0, 2**32, 1000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = np.concatenate([special, ties, random_bits])[:1013]  # 1013 = 63 * 16 + 5: a tail
    try:
        bits = dp._core.bfloat16_bits(values, instructions)
    except ValueError as error:
        assert "this CPU has no" in str(error)
        pytest.skip(f"this CPU has no {instructions}")
    raw = values.view(np.uint32).astype(np.uint64)
    nan = (raw & 0x7FFFFFFF) > 0x7F800000
    expected = np.where(
        nan, (raw >> 16) | 0x40, ((raw + 0x7FFF + ((raw >> 16) & 1)) >> 16) & 0xFFFF
    )
    np.testing.assert_array_equal(bits, expected.astype(np.uint16))
    rounded = (bits.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(rounded[~nan], bf16(values[~nan]).astype(np.float32))


def test_rounding_names_an_unknown_instruction_set():
    with pytest.raises(ValueError, match="instructions: expected 'scalar', 'avx2' or 'avx512'"):
        dp._core.bfloat16_bits(np.ones(3, np.float32), "sse9")


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_after_training_on_sparse_rows_dense_predictions_use_the_trained_first_layer(
    rng, optimizer
):
    """Sparse X's first product reads W^1 itself, not its bfloat16 copy: no update refreshes
    that copy, and a dense forward pass afterwards rounds the trained W^1."""
    sparse = pytest.importorskip("scipy.sparse")
    X = rng.normal(size=(64, 12)).astype(np.float32) * (rng.random((64, 12)) < 0.3)
    y = (X[:, 0] > 0).astype(int)
    options = dict(activation="relu", output="softmax", cost="log_likelihood")
    net, twin = (bf16_network([12, 16, 2], seed=13, **options) for _ in range(2))
    net.fit(sparse.csr_matrix(X), y, epochs=2, batch_size=16, optimizer=optimizer, lr=0.01, seed=0)
    assert not np.array_equal(net.params, twin.params)
    twin.params[...] = net.params
    np.testing.assert_array_equal(net.predict(X), twin.predict(X))
