"""Training that goes wrong: divergence, interruption, exceptions from callbacks."""

from __future__ import annotations

import copy
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import deltaprop as dp
from conftest import restore_default_sigint

# The longest any child of these tests may take to say or finish something.
TIMEOUT = 120


class Child:
    """A Python child process whose output lines are read with a timeout.

    A thread reads its stdout, so a child that says nothing fails the test after
    ``TIMEOUT`` seconds instead of hanging it; the child is killed when the block ends.
    """

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, preexec_fn=restore_default_sigint
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)  # end of output

    def readline(self) -> str:
        """Return the child's next line ("" at the end of its output)."""
        try:
            line = self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"the child said nothing for {TIMEOUT} s") from None
        return "" if line is None else line

    def rest(self) -> str:
        """Return the rest of the child's output, once it has ended."""
        parts = []
        while (line := self.readline()) != "":
            parts.append(line)
        return "".join(parts)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        self.reader.join(timeout=TIMEOUT)  # it reads to the end of the output, then stops
        self.process.stdout.close()


def exploding_problem(dtype="float64"):
    """Identity output, quadratic cost, a learning rate far too large: the weights grow
    geometrically until something overflows."""
    rng = np.random.default_rng(0)
    net = dp.Network([6, 8, 2], activation="identity", output="identity", dtype=dtype, seed=0)
    return net, rng.normal(size=(60, 6)) * 10, rng.normal(size=(60, 2))


def fresh_twin(net: dp.Network) -> dp.Network:
    return dp.Network.from_params(
        net.weights, net.biases, activation=net.activation, output=net.output, cost=net.cost_name
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_divergence_stops_with_the_last_finite_weights(dtype, optimizer):
    net, X, Y = exploding_problem(dtype)
    twin = fresh_twin(net)
    with pytest.raises(dp.DivergenceError, match=r"epoch \d+, batch \d+") as caught:
        net.fit(X, Y, epochs=50, batch_size=4, lr=0.5, optimizer=optimizer, shuffle=False)
    error = caught.value
    assert np.isfinite(net.params).all()
    assert all(np.isfinite(s).all() for s in net.optimizer.state)
    assert len(error.history["cost"]) == error.epoch == len(net.history["cost"])
    # Replaying the batches before the one to blame gives the same weights, bit for bit.
    batches_per_epoch = 15
    done = error.epoch * batches_per_epoch + error.batch
    assert net.optimizer.step == done
    if error.epoch:
        twin.fit(X, Y, epochs=error.epoch, batch_size=4, lr=0.5, optimizer=optimizer, shuffle=False)
    if error.batch:
        rows = 4 * error.batch
        twin.fit(
            X[:rows],
            Y[:rows],
            epochs=1,
            batch_size=4,
            lr=0.5,
            shuffle=False,
            optimizer=None if error.epoch else optimizer,
        )
    np.testing.assert_array_equal(net.params, twin.params)


def test_non_finite_parameters_are_refused_before_training():
    net, X, Y = exploding_problem()
    net.params[3] = np.nan
    with pytest.raises(ValueError, match="parameters contain NaN"):
        net.fit(X, Y, epochs=1)


def test_sgd_step_reports_divergence():
    net, X, Y = exploding_problem()
    net.params[...] = 1e200
    before = net.params.copy()
    with pytest.raises(dp.DivergenceError):
        net.sgd_step(X, Y, lr=1.0)
    np.testing.assert_array_equal(net.params, before)


def test_callback_that_raises_keeps_completed_epochs():
    net, X, Y = exploding_problem()
    twin = fresh_twin(net)

    def fail_in_third_epoch(epoch, metrics):
        if epoch == 2:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        net.fit(X, Y, epochs=5, lr=1e-4, callbacks=[fail_in_third_epoch], seed=3)
    assert len(net.history["cost"]) == 3  # the epoch whose callback raised was completed
    twin.fit(X, Y, epochs=3, lr=1e-4, seed=3)
    np.testing.assert_array_equal(net.params, twin.params)


INTERRUPTED_RUN = textwrap.dedent(
    """
    import sys, numpy as np, deltaprop as dp
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20000, 50)), rng.integers(0, 5, 20000)
    net = dp.Network([50, 64, 5], activation="relu", output="softmax",
                     cost="log_likelihood", seed=0)
    print("started", flush=True)
    try:
        net.fit(X, y, epochs=100000, batch_size=10, optimizer="momentum", lr=1e-3,
                shuffle=False)
    except KeyboardInterrupt:
        np.savez(sys.argv[1], params=net.params, step=net.optimizer.step,
                 epochs=len(net.history["cost"]))
        print("interrupted", flush=True)
    """
)


def test_ctrl_c_leaves_the_weights_of_the_last_batch_done(tmp_path):
    script, result = tmp_path / "run.py", tmp_path / "state.npz"
    script.write_text(INTERRUPTED_RUN)
    with Child([sys.executable, str(script), str(result)]) as child:
        assert child.readline().strip() == "started"
        time.sleep(1.5)  # into the middle of some epoch
        child.process.send_signal(signal.SIGINT)
        assert child.rest().strip() == "interrupted"
        assert child.process.wait(timeout=TIMEOUT) == 0
    saved = np.load(result)
    step, recorded = int(saved["step"]), int(saved["epochs"])
    epochs = step // 2000
    # An interrupt between an epoch's last batch and its metrics leaves it unrecorded.
    assert step > 0 and recorded in (epochs, epochs - (step % 2000 == 0))
    # The same number of batches, replayed without interruption, gives the same weights.
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20000, 50)), rng.integers(0, 5, 20000)
    net = dp.Network(
        [50, 64, 5], activation="relu", output="softmax", cost="log_likelihood", seed=0
    )
    if epochs:
        net.fit(X, y, epochs=epochs, batch_size=10, optimizer="momentum", lr=1e-3, shuffle=False)
    rows = 10 * (step % 2000)
    if rows:
        net.fit(
            X[:rows],
            y[:rows],
            epochs=1,
            batch_size=10,
            shuffle=False,
            optimizer=None if epochs else "momentum",
            lr=1e-3,
        )
    np.testing.assert_array_equal(saved["params"], net.params)


# ------------------------------------------------------------------ checkpoints
def checkpoint_problem():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(300, 12)), rng.integers(0, 4, 300)
    net = dp.Network(
        [12, 16, 4], activation="relu", output="softmax", cost="log_likelihood", seed=5
    )
    return net, X, y


FIT_OPTIONS = {
    "epochs": 8,
    "batch_size": 16,
    "optimizer": "adam",
    "lr": 0.01,
    "dropout": 0.2,
    "schedule": "adaptive",
    "validation_fraction": 0.2,
    "early_stopping": True,
    "patience": 50,
    "seed": 9,
    "checkpoint_every": 2,
}


def test_resumed_training_ends_with_the_uninterrupted_weights(tmp_path):
    reference, X, y = checkpoint_problem()
    full_history = reference.fit(X, y, checkpoint=tmp_path / "full.npz", **FIT_OPTIONS)

    first, _, _ = checkpoint_problem()
    partial = dict(FIT_OPTIONS, epochs=5)  # "killed" after epoch 5; last checkpoint at 4
    first.fit(X, y, checkpoint=tmp_path / "run.npz", **partial)
    # The checkpoint written at epoch 5 (the last one) is replaced by the one of epoch 4
    # to mimic a crash between checkpoints.
    fourth, _, _ = checkpoint_problem()
    fourth.fit(X, y, checkpoint=tmp_path / "run.npz", **dict(FIT_OPTIONS, epochs=4))

    resumed, _, _ = checkpoint_problem()
    history = resumed.fit(X, y, checkpoint=tmp_path / "run.npz", resume=True, **FIT_OPTIONS)
    np.testing.assert_array_equal(resumed.params, reference.params)
    assert history["val_cost"] == full_history["val_cost"]
    assert resumed.optimizer.step == reference.optimizer.step
    assert dp.load(tmp_path / "run.npz").sizes == (12, 16, 4)  # also a model file


def test_resume_checks_network_and_data(tmp_path):
    net, X, y = checkpoint_problem()
    net.fit(X, y, epochs=1, checkpoint=tmp_path / "ck.npz")
    other = dp.Network([12, 8, 4], output="softmax", cost="log_likelihood", seed=0)
    with pytest.raises(ValueError, match=r"checkpoint: .* holds Network"):
        other.fit(X, y, epochs=2, checkpoint=tmp_path / "ck.npz", resume=True)
    with pytest.raises(ValueError, match="trained on 300 samples, not 200"):
        net.fit(X[:200], y[:200], epochs=2, checkpoint=tmp_path / "ck.npz", resume=True)
    dp.save(net, tmp_path / "model.npz")
    with pytest.raises(dp.ModelFormatError, match="not a training checkpoint"):
        net.fit(X, y, epochs=2, checkpoint=tmp_path / "model.npz", resume=True)


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"validation_fraction": 0.0, "early_stopping": False}, "validation_data"),
        ({"train_accuracy": True}, "train_accuracy"),
        ({"schedule": "step"}, "schedule"),
        ({"batch_size": 8}, "batch_size"),
        ({"dropout": 0.0}, "dropout"),
        ({"optimizer": "momentum"}, "optimizer"),
        ({"class_weight": "balanced"}, "class_weight"),
    ],
    ids=[
        "validation",
        "train_accuracy",
        "schedule",
        "batch_size",
        "dropout",
        "optimizer",
        "class_weight",
    ],
)
def test_resume_with_other_arguments_says_which_before_training(tmp_path, changed, named):
    net, X, y = checkpoint_problem()
    net.fit(X, y, checkpoint=tmp_path / "ck.npz", **dict(FIT_OPTIONS, epochs=2))
    before = net.params.copy()
    with pytest.raises(ValueError, match=f"was trained with {named}"):
        net.fit(X, y, checkpoint=tmp_path / "ck.npz", resume=True, **{**FIT_OPTIONS, **changed})
    np.testing.assert_array_equal(net.params, before)


def _crafted_checkpoint(tmp_path, change):
    """A checkpoint of FIT_OPTIONS' run after 2 epochs, its progress altered by ``change``
    and written with deltaprop's own container: its seal is valid."""
    net, X, y = checkpoint_problem()
    path = tmp_path / "ck.npz"
    net.fit(X, y, checkpoint=path, **dict(FIT_OPTIONS, epochs=2))
    record = dp.io.read(path)
    progress = copy.deepcopy(record.training)
    change(progress)
    crafted = dp.io.ModelRecord(
        record.architecture, record.params, record.optimizer, progress, record.best_params
    )
    dp.io.write(path, crafted)
    return path, X, y


def _set(field, value):
    def change(progress):
        progress[field] = value

    return change


def _set_in(field, key, value):
    def change(progress):
        progress[field][key] = value

    return change


CRAFTED_PROGRESS = {
    "extra-history-key": (_set_in("history", "extra", [0.0, 0.0]), "history"),
    "missing-history-key": (lambda progress: progress["history"].pop("val_cost"), "history"),
    "history-list-a-string": (_set_in("history", "cost", "0.1 0.2"), "history"),
    "history-list-of-strings": (_set_in("history", "cost", ["0.1", "0.2"]), "history"),
    "history-of-3-epochs": (lambda progress: progress["history"]["cost"].append(0.5), "history"),
    "rng-state-a-string": (_set_in("rng", "state", "x"), "rng"),
    "rng-state-negative": (_set_in("rng", "state", {"state": -1, "inc": 1}), "rng"),
    "rng-of-another-kind": (_set_in("rng", "bit_generator", "MT19937"), "rng"),
    "schedule-best-a-string": (_set_in("schedule", "best", "nan"), "schedule"),
    "schedule-stalled-negative": (_set_in("schedule", "stalled", -1), "schedule"),
    "schedule-missing-key": (lambda progress: progress["schedule"].pop("stalled"), "schedule"),
    "epochs-done-negative": (_set("epochs_done", -3), "epochs_done"),
    "epochs-done-a-float": (_set("epochs_done", 2.0), "epochs_done"),
    "stopped-a-string": (_set("stopped", "no"), "stopped"),
    "n-samples-a-string": (_set("n_samples", "240"), "n_samples"),
    "stopping-best-a-string": (_set_in("early_stopping", "best_cost", "0.3"), "early_stopping"),
    "stopping-best-epoch-negative": (_set_in("early_stopping", "best_epoch", -1), "early_stopping"),
    "stopping-stalled-a-float": (
        _set_in("early_stopping", "epochs_without_improvement", 1.5),
        "early_stopping",
    ),
    "stopping-state-missing": (_set("early_stopping", None), "early_stopping"),
    "arguments-a-list": (_set("arguments", []), "arguments"),
    "unknown-field": (_set("more", 1), "more"),
    "missing-field": (lambda progress: progress.pop("rng"), "rng"),
}


@pytest.mark.parametrize(("change", "field"), CRAFTED_PROGRESS.values(), ids=list(CRAFTED_PROGRESS))
def test_a_crafted_checkpoint_progress_is_refused_naming_its_field_before_training(
    tmp_path, change, field
):
    path, X, y = _crafted_checkpoint(tmp_path, change)
    net, _, _ = checkpoint_problem()
    before = net.params.copy()
    with pytest.raises(dp.ModelFormatError, match=f"training progress is malformed: .*{field}"):
        net.fit(X, y, checkpoint=path, resume=True, **FIT_OPTIONS)
    np.testing.assert_array_equal(net.params, before)
    assert not any(net.history.values())  # no epoch trained, none restored


def test_an_unaltered_crafted_checkpoint_resumes(tmp_path):
    """The crafting itself keeps a checkpoint valid: what the tests above refuse is theirs."""
    path, X, y = _crafted_checkpoint(tmp_path, lambda progress: None)
    net, _, _ = checkpoint_problem()
    history = net.fit(X, y, checkpoint=path, resume=True, **FIT_OPTIONS)
    assert len(history["cost"]) == FIT_OPTIONS["epochs"]


KILLED_RUN = textwrap.dedent(
    """
    import sys, numpy as np, deltaprop as dp
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(3000, 40)), rng.integers(0, 4, 3000)
    net = dp.Network([40, 64, 4], activation="relu", output="softmax",
                     cost="log_likelihood", seed=5)
    net.fit(X, y, epochs=int(sys.argv[2]), batch_size=8, optimizer="momentum", lr=0.01,
            dropout=0.1, seed=1, checkpoint=sys.argv[1], resume=True,
            callbacks=[lambda epoch, m: print(epoch, flush=True)])
    np.save(sys.argv[1] + ".params.npy", net.params)
    """
)


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    epochs = "12"

    def command(name):
        return [sys.executable, str(script), str(tmp_path / name), epochs]

    subprocess.run(command("clean.npz"), check=True, capture_output=True, timeout=TIMEOUT)
    with Child(command("killed.npz")) as child:
        while int(child.readline()) < 3:  # at least one checkpoint exists
            pass
    assert not (tmp_path / "killed.npz.params.npy").exists()
    subprocess.run(command("killed.npz"), check=True, capture_output=True, timeout=TIMEOUT)
    np.testing.assert_array_equal(
        np.load(tmp_path / "killed.npz.params.npy"), np.load(tmp_path / "clean.npz.params.npy")
    )


SAVING_LOOP = textwrap.dedent(
    """
    import sys, numpy as np, deltaprop as dp
    nets = [dp.Network([300, 400, 10], seed=s) for s in (0, 1)]
    print("ready", flush=True)
    i = 0
    while True:
        nets[i % 2].save(sys.argv[1])
        i += 1
    """
)


def test_a_save_killed_at_a_random_moment_leaves_a_whole_file(tmp_path):
    script, path = tmp_path / "save.py", tmp_path / "model.npz"
    script.write_text(SAVING_LOOP)
    candidates = [dp.Network([300, 400, 10], seed=s).params for s in (0, 1)]
    rng = np.random.default_rng(0)
    for _ in range(5):
        with Child([sys.executable, str(script), str(path)]) as child:
            assert child.readline().strip() == "ready"
            time.sleep(0.2 + rng.random() * 0.3)
        loaded = dp.load(path).params
        assert any(np.array_equal(loaded, c) for c in candidates)


# ------------------------------------------------------------------ overflow of the state
def overflowing_problem(optimizer: str):
    """A float32 network trained a little on tame targets, and targets of 1e21 that make
    it overflow: Adam's second moment squares the first gradient past float32's range;
    the other optimizers' weights overflow after a few steps of lr 1e10."""
    rng = np.random.default_rng(0)
    net = dp.Network([4, 3], dtype="float32", output="identity", seed=0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    Y = (rng.normal(size=(40, 3)) * 1e21).astype(np.float32)
    net.fit(X[:5], Y[:5] * 1e-21, epochs=1, batch_size=5, optimizer=optimizer, lr=1e-3)
    net.optimizer.lr = 1e10
    return net, X, Y


def state_of(net):
    return [net.params.copy(), *[s.copy() for s in net.optimizer.state], net.optimizer.step]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_divergence_blames_the_first_bad_batch_and_keeps_finite_state(tmp_path, optimizer):
    """The error names the first batch whose update overflows, the network is back to the
    parameters and optimizer state of before it (all finite, as a run of the batches
    before it leaves them), and it can be saved and trained again."""
    net, X, Y = overflowing_problem(optimizer)
    with pytest.raises(dp.DivergenceError) as caught:
        net.fit(X, Y, epochs=3, batch_size=5, shuffle=False)
    blamed = caught.value.batch
    assert caught.value.epoch == 0
    twin, _, _ = overflowing_problem(optimizer)
    if blamed:
        twin.fit(X[: 5 * blamed], Y[: 5 * blamed], epochs=1, batch_size=5, shuffle=False)
    for got, want in zip(state_of(net), state_of(twin)):
        np.testing.assert_array_equal(got, want)
    assert all(np.isfinite(array).all() for array in state_of(net)[:-1])
    with pytest.raises(dp.DivergenceError) as again:  # batch `blamed` is bad indeed
        twin.fit(X[5 * blamed :], Y[5 * blamed :], epochs=1, batch_size=5, shuffle=False)
    assert again.value.batch == 0
    net.save(tmp_path / "model.npz")
    net.fit(X[:5], Y[:5] * 1e-21, epochs=1, batch_size=5, lr=1e-3)


@pytest.mark.parametrize("method", ["cost", "gradients"])
@pytest.mark.parametrize(
    ("x", "y"), [(1e308, 1e308), (1.0, 1e155), (1.0, -1e200)], ids=["huge-x", "y-1e155", "y-neg"]
)
def test_cost_and_gradients_never_return_non_finite_numbers(method, x, y):
    net = dp.Network([4, 3], output="identity", seed=0)
    X, Y = np.full((2, 4), x), np.full((2, 3), y)
    with pytest.raises(ValueError, match="overflow"):
        getattr(net, method)(X, Y)
