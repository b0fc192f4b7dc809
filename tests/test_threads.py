"""The GIL is released in the core; threads, BLAS thread counts and reproducibility."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import threadpoolctl

import deltaprop as dp


def big_problem(seed=0, n=20000):
    rng = np.random.default_rng(seed)
    net = dp.Network(
        [200, 256, 10], activation="relu", output="softmax", cost="log_likelihood", seed=seed
    )
    return net, rng.normal(size=(n, 200)), rng.integers(0, 10, n)


def test_another_python_thread_runs_during_a_core_call():
    net, X, y = big_problem()
    Y = np.eye(10)[y]
    ticks, running = [], threading.Event()

    def count():
        running.set()
        while len(ticks) < 10**7 and not stop.is_set():
            ticks.append(time.perf_counter())

    stop = threading.Event()
    counter = threading.Thread(target=count)
    counter.start()
    running.wait()
    rule = dp._core.UpdateRule("sgd", 0.01)
    step = np.zeros(1, dtype=np.int64)
    start = time.perf_counter()
    settings = dp._core.TrainSettings(batch_size=10, rule=rule)
    net._core.train(net.params, [], step, X, Y, None, None, settings)  # one long call
    end = time.perf_counter()
    stop.set()
    counter.join()
    inside = sum(start < t < end for t in ticks)
    assert end - start > 0.05
    # Holding the GIL for the whole call would leave the counter at a standstill.
    assert inside > 1000


def train(seed):
    net, X, y = big_problem(seed, n=3000)
    net.fit(X, y, epochs=2, batch_size=32, optimizer="adam", dropout=0.1, seed=seed)
    return net.params


def test_two_networks_in_two_threads_match_sequential_runs():
    sequential = [train(1), train(2)]
    results = {}
    threads = [threading.Thread(target=lambda s=s: results.update({s: train(s)})) for s in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_array_equal(results[1], sequential[0])
    np.testing.assert_array_equal(results[2], sequential[1])


def test_one_network_refuses_a_second_concurrent_fit_but_serves_predictions():
    net, X, y = big_problem(n=20000)
    errors, predictions = [], []
    started = threading.Event()

    def long_fit():
        started.set()
        net.fit(X, y, epochs=3, batch_size=10, lr=0.01)

    trainer = threading.Thread(target=long_fit)
    trainer.start()
    started.wait()
    time.sleep(0.05)
    try:
        net.fit(X[:100], y[:100], epochs=1)
    except RuntimeError as error:
        errors.append(str(error))
    predictions.append(net.predict(X[:50]))  # between the trainer's core calls
    trainer.join()
    assert errors == ["this network is already being trained (in another thread)"]
    assert np.isfinite(predictions[0]).all()
    net.fit(X[:100], y[:100], epochs=1)  # free again once the first fit is done


def test_networks_pickle_with_their_optimizer_state():
    net, X, y = big_problem(n=500)
    net.fit(X, y, epochs=1, optimizer="adam")
    copy = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(copy.params, net.params)
    net.fit(X, y, epochs=1)
    copy.fit(X, y, epochs=1)
    np.testing.assert_array_equal(copy.params, net.params)


@pytest.fixture
def restore_threads():
    before = dp.get_num_threads()
    yield
    dp.set_num_threads(before)


def fit_with_threads(n_threads, optimizer="momentum"):
    """Every element-wise pass of this network is shared among 2 threads (see team.hpp):
    the activations, BP2's products, BP3's sums, the update, the gathering of the rows."""
    dp.set_num_threads(n_threads)
    net, X, y = big_problem(3, n=4000)
    net.fit(
        X, y, epochs=2, batch_size=256, optimizer=optimizer, lr=0.01, lmbda=0.5, dropout=0.1, seed=3
    )
    cost, weight_gradients, bias_gradients = net.gradients(X[:300], y[:300])
    gradients = np.concatenate([g.ravel() for g in weight_gradients + bias_gradients])
    return net.params.copy(), net.predict(X[:500]), np.append(gradients, cost)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "rprop"])
def test_thread_counts_agree_to_rounding_and_each_is_reproducible(restore_threads, optimizer):
    one, one_again = fit_with_threads(1, optimizer), fit_with_threads(1, optimizer)
    two, two_again = fit_with_threads(2, optimizer), fit_with_threads(2, optimizer)
    for first, again in [(one, one_again), (two, two_again)]:
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(one, two):  # OpenBLAS's threaded products round otherwise
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_rows_gathered_ahead_are_the_rows_of_the_permutation(restore_threads, threads):
    # While a batch trains, the team's idle workers gather the next batch's rows (see
    # GatheredRows in rows.hpp) and the call takes over the rows they did not reach:
    # the epoch must be the one trained on the permuted rows in storage order.
    dp.set_num_threads(threads)
    net, X, y = big_problem(4, n=3001)  # 12 batches of 256, the last of 185
    sample_weight = np.random.default_rng(4).uniform(0.5, 2.0, len(X))
    again = big_problem(4, n=3001)[0]  # the same network
    options = dict(epochs=1, batch_size=256, optimizer="momentum", lr=0.01)
    net.fit(X, y, sample_weight=sample_weight, seed=9, **options)
    order = np.random.default_rng(9).permutation(len(X))  # fit's first epoch with seed=9
    again.fit(
        X[order], y[order], sample_weight=sample_weight[order], shuffle=False, seed=9, **options
    )
    np.testing.assert_array_equal(net.params, again.params)


def test_every_network_instance_computes_the_same_bits():
    # OpenBLAS peels its loops by the operands' alignment, which reorders sums: with
    # workspaces where malloc put them, about one instance in five of this network (found
    # by the boundary tests) gave a cost one ulp away from the others. The workspaces
    # are 64-byte aligned now.
    params = [
        0.567164859276178, -0.5106316426039302, -1.5353630428126854, -1.5743801596566738,
        -0.29102790911143445, -0.5896843246472658, 0.4934444716843515, 0.15434826591385925,
        0.7925040163066359, 0.22851522350129141, 0.7191293050510064, 0.12166931493913775,
    ]  # fmt: skip
    X, Y = np.zeros((4, 1)), np.zeros((4, 1))
    rng = np.random.default_rng(0)
    outcomes, heap = set(), []
    for _ in range(500):
        net = dp.Network([1, 3, 1, 1], activation="identity", output="sigmoid", cost="quadratic")
        net.params[...] = params
        cost = net.sgd_step(X, Y, lr=0.001)
        outcomes.add((float(cost), net.params.tobytes()))
        heap.append(np.empty(int(rng.integers(1, 300)), dtype=np.uint8))  # move the next one
        heap.append(net)
    assert len(outcomes) == 1


def test_threadpoolctl_controls_the_core_pool(restore_threads):
    dp.set_num_threads(2)
    libraries = [info["filepath"] for info in threadpoolctl.threadpool_info()]
    assert any("deltaprop" in path and "openblas" in path for path in libraries)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert dp.get_num_threads() == 1
    assert dp.get_num_threads() == 2


@pytest.mark.parametrize(
    ("bad", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_set_num_threads_validates(bad, error):
    with pytest.raises(error, match="n: expected an integer"):
        dp.set_num_threads(bad)


IDLE_AFTER_TRAINING = """
import time, numpy as np, deltaprop as dp
dp.set_num_threads(2)
rng = np.random.default_rng(0)
X, y = rng.random((4096, 784)), rng.integers(0, 10, 4096)
net = dp.Network([784, 256, 10], activation="relu", output="softmax", cost="log_likelihood")
net.fit(X, y, epochs=1, batch_size=256, lr=0.01)
start = time.process_time()
time.sleep(0.5)
print(time.process_time() - start)
"""


def test_core_threads_do_not_spin_after_training():
    """Idle OpenBLAS threads would otherwise spin for ~0.1 s after every call, taking a
    core from whatever the user's numpy does next (CPU time of this process, not speed)."""
    result = subprocess.run(
        [sys.executable, "-c", IDLE_AFTER_TRAINING], capture_output=True, text=True, check=True
    )
    assert float(result.stdout) < 0.03


# ------------------------------------------------------------------ saving while training
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_saves_and_pickles_during_fit_in_another_thread_are_consistent(tmp_path, optimizer):
    """A save (or pickle) while another thread trains the network copies the parameters
    and optimizer state between two batches: every file loads, every pickle matches."""
    net, X, y = big_problem(n=4000)
    failures, done = [], threading.Event()

    def fit():
        try:
            net.fit(X, y, epochs=6, batch_size=16, optimizer=optimizer, lr=0.01, seed=0)
        finally:
            done.set()

    trainer = threading.Thread(target=fit)
    trainer.start()
    path, saves = tmp_path / "model.npz", 0
    while not done.is_set() or saves < 3:
        net.save(path)
        loaded = dp.load(path)  # a torn copy would fail its checksum here
        copy = pickle.loads(pickle.dumps(net))
        named = None if loaded.optimizer is None else loaded.optimizer.name
        if not np.isfinite(copy.params).all() or named not in (None, optimizer):
            failures.append(saves)
        saves += 1
    trainer.join()
    assert failures == [] and saves >= 3


# ------------------------------------------------------------------ fork
FORK_DURING_A_CORE_CALL = """
import multiprocessing, threading, time
import numpy as np
import deltaprop as dp

def trained_network_sum():
    # Products and passes large enough for the core's team of threads (see team.hpp),
    # whose workers the child does not inherit.
    rng = np.random.default_rng(1)
    net = dp.Network([200, 300, 3], activation="relu", output="softmax",
                     cost="log_likelihood", seed=1)
    net.fit(rng.normal(size=(1024, 200)), rng.integers(0, 3, 1024), epochs=2, batch_size=128,
            optimizer="momentum", lr=0.05)
    return float(net.params.sum())

def child_trains_its_own_network(queue):
    queue.put(trained_network_sum())

rng = np.random.default_rng(0)
big = dp.Network([400, 512, 10], activation="relu", output="softmax",
                 cost="log_likelihood", seed=0)
X, y = rng.normal(size=(20000, 400)), rng.integers(0, 10, 20000)
dp.set_num_threads(2)
busy = threading.Thread(target=lambda: big.fit(X, y, epochs=3, batch_size=256))
busy.start()
context = multiprocessing.get_context("fork")
values = []
for attempt in range(5):
    time.sleep(0.05)
    queue = context.Queue()
    child = context.Process(target=child_trains_its_own_network, args=(queue,))
    child.start()
    values.append(queue.get(timeout=30))
    child.join(timeout=30)
    assert child.exitcode == 0
busy.join()
assert values == [trained_network_sum()] * len(values), values
print("ok")
"""


def test_a_fork_while_another_thread_is_in_the_core_gives_a_usable_child():
    """multiprocessing's fork while a thread trains: the child trains its own network, as
    the parent does it (it would hang in OpenBLAS's locks if forked in the middle of a core
    call, or in the core's team without the workers it had)."""
    done = subprocess.run(
        [sys.executable, "-c", FORK_DURING_A_CORE_CALL],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
