"""The command line trains on the shipped digits and reports errors in one line."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pytest
import scipy.sparse as sparse

import deltaprop as dp
from conftest import under_address_space_limit
from deltaprop import cli


def test_default_training_reaches_high_accuracy(capsys):
    assert cli.main([]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("Network([64, 30, 10]")
    assert sum(line.startswith("epoch ") for line in lines) == 30
    accuracy = float(lines[-1].split()[2])
    assert accuracy >= 0.95


def test_train_subcommand_options(capsys):
    argv = [
        "train",
        "--hidden",
        "20",
        "12",
        "--activation",
        "relu",
        "--epochs",
        "2",
        "--lr",
        "0.1",
        "--dtype",
        "float32",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Network([64, 20, 12, 10], activation='relu'" in out
    assert "dtype='float32'" in out and "epoch 2/2" in out


def test_train_takes_an_activation_and_a_slope_per_hidden_layer(tmp_path, capsys):
    model = tmp_path / "model.npz"
    argv = "train --hidden 20 12 --activation leaky_relu tanh --leaky-slope 0.2 0.01 --epochs 2"
    argv = [*argv.split(), "--lr", "0.1", "--save", str(model)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Network([64, 20, 12, 10], activation=['leaky_relu', 'tanh']" in out
    net = dp.load(model)
    assert (net.activations, net.leaky_slopes) == (("leaky_relu", "tanh"), (0.2, 0.01))
    assert cli.main(["evaluate", str(model)]) == 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--activation", "relu", "tanh"], "--activation: expected one value or one per --hidden "
                                           "layer (1), got 2"),
        (["--hidden", "8", "8", "--activation", "relu", "tanh", "relu"], "(2), got 3"),
        (["--hidden", "8", "--leaky-slope", "0.1", "0.2"], "--leaky-slope: expected one value"),
        (["--activation", "relu", "swish"], "argument --activation: invalid choice: 'swish'"),
        (["--leaky-slope", "inf"], "argument --leaky-slope: expected a finite number"),
        (["--leaky-slope", "x"], "argument --leaky-slope: invalid float value: 'x'"),
    ],
)  # fmt: skip
def test_per_layer_option_errors_are_one_line(argv, message, capsys):
    assert cli.main(["train", "--epochs", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deltaprop: error: ") and message in err


def test_class_weight_balanced_trains_as_fit_does(capsys):
    argv = ["train", "--epochs", "2", "--class-weight", "balanced", "--quiet"]
    net = cli.train(cli._parser().parse_args(argv))
    X, y = dp.datasets.load_digits()
    (X_train, y_train), _ = dp.datasets.train_test_split(X, y, test_fraction=0.2, seed=0)
    options = {"output": "softmax", "cost": "log_likelihood", "init": "normal_scaled"}
    expected, unweighed = (dp.Network([64, 30, 10], seed=0, **options) for _ in range(2))
    expected.fit(X_train, y_train, epochs=2, lr=0.5, class_weight="balanced", seed=0)
    unweighed.fit(X_train, y_train, epochs=2, lr=0.5, seed=0)
    assert np.array_equal(net.params, expected.params)
    assert not np.array_equal(net.params, unweighed.params)
    assert cli.main(["--epochs", "1", "--class-weight", "even"]) == 2
    assert "argument --class-weight: invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--lr", "-1"),
        ("--seed", "-1"),
        ("--epochs", "-2"),
        ("--batch-size", "0"),
        ("--momentum", "1.0"),
        ("--lmbda", "nan"),
        ("--patience", "0"),
        ("--test-fraction", "1"),
        ("--hidden", "0"),
    ],
)
def test_bad_option_values_are_one_line_naming_the_option(option, value, capsys):
    assert cli.main(["--epochs", "1", option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deltaprop: error: argument {option}: ") and err.count("\n") == 1


def test_python_dash_m_runs():
    result = subprocess.run(
        [sys.executable, "-m", "deltaprop", "--epochs", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout


def test_train_save_plot_then_evaluate_and_predict(tmp_path, capsys):
    model, curves = tmp_path / "model.npz", tmp_path / "curves.png"
    argv = [
        "train",
        "--epochs",
        "3",
        "--optimizer",
        "adam",
        "--hidden",
        "32",
        "--activation",
        "relu",
        "--dropout",
        "0.1",
        "--schedule",
        "step",
        "--save",
        str(model),
        "--plot",
        str(curves),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch 1/3" not in out  # --quiet
    assert model.exists() and curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert cli.main(["evaluate", str(model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    accuracy = float(lines[0].split("accuracy ")[1].split()[0])
    assert accuracy > 0.8
    confusion = np.array([[int(v) for v in line.split()[1:]] for line in lines[3:13]])
    assert confusion.shape == (10, 10) and confusion.sum() == 359
    assert np.trace(confusion) / confusion.sum() == pytest.approx(accuracy, abs=1e-4)

    X = dp.datasets.load_digits()[0][:7]
    np.save(tmp_path / "input.npy", X)
    assert cli.main(["predict", str(model), str(tmp_path / "input.npy")]) == 0
    outputs = np.load(tmp_path / "input.predictions.npy")
    np.testing.assert_allclose(outputs, dp.load(model).predict(X), rtol=1e-12)
    assert (
        cli.main(
            [
                "predict",
                str(model),
                str(tmp_path / "input.npy"),
                "--classes",
                "-o",
                str(tmp_path / "classes.npy"),
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(np.load(tmp_path / "classes.npy"), outputs.argmax(axis=1))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "missing.npz"], "No such file"),
        (["train", "--data", "nowhere"], "--data: expected"),
        (["train", "--epochs", "x"], "invalid int value"),
        (["train", "--dropout", "1.5", "--epochs", "1"], "dropout"),
        (["predict"], "the following arguments are required"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deltaprop: error: ") and message in err


def test_predict_refuses_wrong_input(tmp_path, capsys):
    model = tmp_path / "model.npz"
    dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0).save(model)
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    assert cli.main(["predict", str(model), str(tmp_path / "bad.npy")]) == 2
    assert "X: expected shape (n_samples, 64)" in capsys.readouterr().err
    (tmp_path / "corrupt.npz").write_bytes(b"junk")
    assert cli.main(["evaluate", str(tmp_path / "corrupt.npz")]) == 2
    assert "not a deltaprop model file" in capsys.readouterr().err


def test_evaluate_refuses_a_model_with_fewer_outputs_than_classes(tmp_path, capsys):
    """The digits have 10 classes; a 5-output model cannot grade them (not an IndexError)."""
    model = tmp_path / "five.npz"
    dp.Network([64, 8, 5], output="softmax", cost="log_likelihood", seed=0).save(model)
    err = _one_line_error(["evaluate", str(model), "--data", "digits"], capsys)
    assert "--data digits: labels" in err and "5" in err


def test_fashion_mnist_directory_as_data(tmp_path, capsys):
    """A directory of IDX files (here, tiny ones written for the test) is a data source."""
    rng = np.random.default_rng(0)

    def write_idx(name, array):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(
            int(n).to_bytes(4, "big") for n in array.shape
        )
        (tmp_path / name).write_bytes(header + array.astype(np.uint8).tobytes())

    write_idx("train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28)))
    write_idx("train-labels-idx1-ubyte", np.arange(40) % 10)
    write_idx("t10k-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28)))
    write_idx("t10k-labels-idx1-ubyte", np.arange(20) % 10)
    assert cli.main(["train", "--data", str(tmp_path), "--epochs", "1", "--quiet"]) == 0
    assert "Network([784, 30, 10]" in capsys.readouterr().out


def _one_line_error(argv, capsys) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deltaprop: error: "), err
    return err


def test_divergence_is_one_line_saying_what_to_lower(capsys):
    argv = ["--epochs", "3", "--lr", "1e10", "--activation", "relu", "--output", "identity"]
    err = _one_line_error([*argv, "--cost", "quadratic", "--quiet"], capsys)
    assert "diverged" in err and "--lr" in err


def test_a_hidden_layer_too_large_to_allocate_is_one_line(capsys):
    err = _one_line_error(["--epochs", "1", "--hidden", "2000000000", "--quiet"], capsys)
    assert "memory" in err or "hidden" in err or "sizes" in err


@pytest.mark.parametrize("content", ["empty", "garbage", "no-rows", "objects"])
def test_malformed_npy_inputs_are_one_line(tmp_path, capsys, content):
    model, data = tmp_path / "model.npz", tmp_path / "input.npy"
    dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0).save(model)
    if content == "empty":
        data.write_bytes(b"")
    elif content == "garbage":
        data.write_bytes(b"\x93NUMPY junk")
    elif content == "no-rows":
        np.save(data, np.zeros((0, 64)))
    else:
        np.save(data, np.array([[object()]] * 2), allow_pickle=True)
    _one_line_error(["predict", str(model), str(data)], capsys)


PREDICT_UNDER_A_MEMORY_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from deltaprop import cli
sys.exit(cli.main(["predict", sys.argv[1], sys.argv[2]]))
"""


@under_address_space_limit
def test_npy_header_claiming_terabytes_is_refused_under_a_memory_limit(tmp_path):
    """A header announcing 46 TiB in a file of a few hundred bytes: refused from the
    file's size, before anything is allocated."""
    model, data = tmp_path / "model.npz", tmp_path / "input.npy"
    dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0).save(model)
    np.save(data, np.zeros((2, 64)))
    data.write_bytes(data.read_bytes().replace(b"(2, 64)", b"(90000000000, 64)"))
    done = subprocess.run(
        [sys.executable, "-c", PREDICT_UNDER_A_MEMORY_LIMIT, str(model), str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "more than the file's" in done.stderr


def _train_with_a_save_that_fails_once(tmp_path, capsys, monkeypatch):
    """Train with --save failing once; return the error line and where the model was kept."""
    real_save, calls = dp.Network.save, []

    def save_failing_once(net, path):
        calls.append(path)
        if len(calls) == 1:
            raise PermissionError(13, "Permission denied", str(path))
        real_save(net, path)

    monkeypatch.setattr(dp.Network, "save", save_failing_once)
    err = _one_line_error(["--epochs", "1", "--quiet", "--save", str(tmp_path / "m.npz")], capsys)
    return err, calls[1]


def test_a_model_that_cannot_be_saved_after_training_is_kept(tmp_path, capsys, monkeypatch):
    err, kept = _train_with_a_save_that_fails_once(tmp_path, capsys, monkeypatch)
    assert f"saved to {kept}" in err and dp.load(kept).sizes == (64, 30, 10)
    os.unlink(kept)


def test_predict_on_a_fifo_fails_at_once(tmp_path):
    model, fifo = tmp_path / "model.npz", tmp_path / "input.npy"
    dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0).save(model)
    os.mkfifo(fifo)
    for argv in (["predict", str(model), str(fifo)], ["evaluate", str(fifo)]):
        done = subprocess.run(
            [sys.executable, "-m", "deltaprop", *argv], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and "not a regular file" in done.stderr


def test_save_into_a_missing_directory_fails_before_training(tmp_path, capsys):
    err = _one_line_error(["--epochs", "1", "--save", str(tmp_path / "no" / "m.npz")], capsys)
    assert "--save" in err and "does not exist" in err
    assert "epoch" not in capsys.readouterr().out


def test_predict_output_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    model, data, out = tmp_path / "model.npz", tmp_path / "x.npy", tmp_path / "out.npy"
    dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0).save(model)
    np.save(data, np.zeros((3, 64)))
    out.write_bytes(b"old")
    out.chmod(0o644)
    assert cli.main(["predict", str(model), str(data), "-o", str(out)]) == 0
    assert (out.stat().st_mode & 0o777) == 0o644 and np.load(out).shape == (3, 10)


def test_version_is_the_package_version_and_the_installed_one(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"deltaprop {dp.__version__}\n"
    assert importlib.metadata.version("deltaprop") == dp.__version__


def _options(parser: argparse.ArgumentParser):
    """Every option of the parser and of its subcommands, with the parser showing it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                yield from _options(subparser)
        elif action.option_strings and action.default is not argparse.SUPPRESS:
            yield parser, action


def test_help_shows_every_option_default():
    options = list(_options(cli._parser()))
    assert len(options) > 25
    for parser, action in options:
        shown = parser._get_formatter()._get_help_string(action)
        assert "default" in shown, action.option_strings


def test_predict_classes_never_replace_the_activations(tmp_path, capsys):
    model, data = tmp_path / "model.npz", tmp_path / "x.npy"
    net = dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0)
    net.save(model)
    np.save(data, dp.datasets.load_digits()[0][:5])
    assert cli.main(["predict", str(model), str(data)]) == 0
    assert cli.main(["predict", str(model), str(data), "--classes"]) == 0
    out = capsys.readouterr().out
    assert f"written to {tmp_path / 'x.predictions.npy'}" in out
    assert f"written to {tmp_path / 'x.classes.npy'}" in out
    outputs = np.load(tmp_path / "x.predictions.npy")
    np.testing.assert_allclose(outputs, net.predict(np.load(data)), rtol=1e-12)
    np.testing.assert_array_equal(np.load(tmp_path / "x.classes.npy"), outputs.argmax(axis=1))


def test_predict_checks_its_output_before_reading_anything(tmp_path, capsys):
    missing = tmp_path / "missing"
    argv = ["predict", str(missing / "model.npz"), str(missing / "x.npy")]
    err = _one_line_error([*argv, "-o", str(missing / "out.npy")], capsys)
    assert err.startswith("deltaprop: error: --output: directory") and "does not exist" in err


def test_missing_fashion_mnist_is_reported_in_the_command_line_words(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dp.datasets, "FASHION_MNIST_DIRS", ())
    monkeypatch.setenv(dp.datasets.FASHION_MNIST_ENV, str(tmp_path))
    installed = _one_line_error(["--data", "fashion-mnist", "--epochs", "1"], capsys)
    directory = _one_line_error(["--data", str(tmp_path), "--epochs", "1"], capsys)
    assert "--data fashion-mnist: Fashion-MNIST is not installed" in installed
    assert f"--data: {tmp_path} does not hold Fashion-MNIST's four IDX files" in directory
    assert "directory=" not in installed + directory


def test_a_full_stdout_costs_neither_training_nor_the_save(tmp_path):
    model = tmp_path / "m.npz"
    with open(os.devnull if not os.path.exists("/dev/full") else "/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "deltaprop", "--epochs", "2", "--save", str(model)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "standard output" in done.stderr and dp.load(model).sizes == (64, 30, 10)


def test_a_closed_pipe_ends_quietly_after_the_save(tmp_path):
    model = tmp_path / "m.npz"
    argv = [sys.executable, "-m", "deltaprop", "--epochs", "2", "--save", str(model)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `| head -n 0` would
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141 and err == b""
    assert dp.load(model).sizes == (64, 30, 10)


def test_the_kept_model_never_goes_through_a_planted_link(tmp_path, capsys, monkeypatch):
    shared, victim = tmp_path / "shared", tmp_path / "victim"
    shared.mkdir()
    victim.write_text("precious")
    (shared / f"deltaprop-{os.getpid()}.npz").symlink_to(victim)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    err, kept = _train_with_a_save_that_fails_once(tmp_path, capsys, monkeypatch)
    assert victim.read_text() == "precious" and f"saved to {kept}" in err
    assert (os.stat(os.path.dirname(kept)).st_mode & 0o777) == 0o700


# ------------------------------------------------------ the split a model was trained on
def _train_quietly(tmp_path, capsys, *options):
    model = tmp_path / "model.npz"
    argv = ["train", "--epochs", "2", "--hidden", "12", "--save", str(model), *options]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    accuracy = next(line for line in lines if line.startswith("test accuracy")).split()[2]
    return model, lines, float(accuracy)


def _evaluated(argv, capsys):
    assert cli.main(["evaluate", *argv]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    return float(first.split("accuracy ")[1].split()[0]), first


def test_evaluate_grades_a_model_on_the_split_it_was_trained_with(tmp_path, capsys):
    model, _, trained = _train_quietly(tmp_path, capsys, "--seed", "1", "--quiet")
    assert dp.load(model).trained_on == {"data": "digits", "test_fraction": 0.2, "seed": 1}
    accuracy, line = _evaluated([str(model)], capsys)
    assert accuracy == pytest.approx(trained, abs=1e-4)
    assert "digits (test fraction 0.2, seed 1)" in line
    assert "the test split the model was trained with" in line
    _, line = _evaluated([str(model), "--data", "digits", "--seed", "1"], capsys)
    assert "the test split the model was trained with" in line  # the same, given


def test_evaluate_on_another_split_says_it_is_not_the_training_one(tmp_path, capsys):
    model, _, _ = _train_quietly(tmp_path, capsys, "--seed", "1", "--quiet")
    _, line = _evaluated([str(model), "--seed", "0"], capsys)
    assert "digits (test fraction 0.2, seed 0)" in line
    assert "as given, not the split the model was trained with" in line
    assert "seed 1" in line and "trained on" in line


def test_evaluate_of_a_file_without_its_split_uses_the_defaults_and_says_so(tmp_path, capsys):
    model = tmp_path / "model.npz"
    dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0).save(model)
    _, line = _evaluated([str(model)], capsys)
    assert "digits (test fraction 0.2, seed 0)" in line
    assert "does not record its training split: the defaults" in line


def test_epoch_lines_name_the_test_split_for_what_it_is(tmp_path, capsys):
    _, lines, _ = _train_quietly(tmp_path, capsys)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("test_cost" in e and "test_accuracy" in e for e in epochs)
    assert not any("val_" in line for line in lines)
    _, lines, _ = _train_quietly(tmp_path, capsys, "--validation-fraction", "0.2")
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("val_accuracy" in e and "test_" not in e for e in epochs)


def test_the_plot_calls_the_test_split_curve_so(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    figures = []
    draw = dp.plot.learning_curves
    monkeypatch.setattr(
        dp.plot, "learning_curves", lambda *a, **k: figures.append(draw(*a, **k)) or figures[-1]
    )
    png = tmp_path / "curves.png"
    for options, label in (((), "test split"), (("--validation-fraction", "0.2"), "validation")):
        _train_quietly(tmp_path, capsys, "--quiet", "--plot", str(png), *options)
        assert png.read_bytes()[:4] == b"\x89PNG"
        labels = {
            text.get_text()
            for axes in figures[-1].axes
            if axes.get_legend() is not None
            for text in axes.get_legend().get_texts()
        }
        other = "validation" if label == "test split" else "test split"
        assert {"training", label} <= labels and other not in labels


def test_evaluate_names_a_recorded_data_set_that_is_gone(tmp_path, capsys):
    model = tmp_path / "model.npz"
    net = dp.Network([784, 10], output="softmax", cost="log_likelihood", seed=0)
    net.trained_on = {"data": str(tmp_path / "gone")}
    net.save(model)
    err = _one_line_error(["evaluate", str(model)], capsys)
    assert "gone" in err and "records the model was trained on: give --data" in err


def test_train_standardize_keeps_the_scaling_for_predict_evaluate_and_export(tmp_path, capsys):
    model = tmp_path / "model.npz"
    argv = ["train", "--epochs", "2", "--standardize", "--save", str(model), "--quiet"]
    assert cli.main(argv) == 0
    net = dp.load(model)
    assert net.input_mean is not None and net.input_scale.shape == (64,)
    X, y = dp.datasets.load_digits()
    (X_train, _), _ = dp.datasets.train_test_split(X, y, test_fraction=0.2, seed=0)
    np.testing.assert_allclose(net.input_mean, X_train.mean(axis=0), rtol=1e-12, atol=1e-12)
    plain = dp.Network.from_params(
        net.weights, net.biases, activation=net.activation, output=net.output, cost=net.cost_name
    )
    scaled = (X[:9] - net.input_mean) / net.input_scale
    np.save(tmp_path / "input.npy", X[:9])
    assert cli.main(["predict", str(model), str(tmp_path / "input.npy")]) == 0
    np.testing.assert_array_equal(
        np.load(tmp_path / "input.predictions.npy"), plain.predict(scaled)
    )
    capsys.readouterr()
    assert cli.main(["evaluate", str(model)]) == 0
    assert float(capsys.readouterr().out.split("accuracy ")[1].split()[0]) > 0.8
    assert cli.main(["export", str(model), str(tmp_path / "model.onnx")]) == 0
    assert dp.Network.from_onnx(tmp_path / "model.onnx").input_scale is not None


# ----------------------------------------------------------------------- sparse data files


def _word_counts(n_samples=90, n_features=40, seed=0):
    """Bag-of-words-like rows (whole counts: exact in text) and labels they predict."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.15, (n_samples, n_features)).astype(np.float64)
    counts[0, -1] = 2.0  # the last feature occurs: an svmlight file has all 40
    labels = (counts[:, :20].sum(axis=1) > counts[:, 20:].sum(axis=1)).astype(np.int64)
    return sparse.csr_matrix(counts), labels


def _write_svmlight(path, X, labels):
    """svmlight text, indices from 1 (repr of the values: they read back exactly)."""
    lines = []
    for row, label in enumerate(labels):
        entries = X[row]
        pairs = " ".join(f"{j + 1}:{float(v)!r}" for j, v in zip(entries.indices, entries.data))
        lines.append(f"{label} {pairs}".rstrip())
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kind", ["npz", "svmlight"])
def test_train_and_predict_from_a_sparse_file_as_the_python_api_does(tmp_path, capsys, kind):
    X, y = _word_counts()
    if kind == "npz":
        data = tmp_path / "words.npz"
        sparse.save_npz(data, X)
        np.save(tmp_path / "labels.npy", y)
        source = ["--data", str(data), "--labels", str(tmp_path / "labels.npy")]
    else:
        data = tmp_path / "words.svm"
        _write_svmlight(data, X, y)
        source = ["--data", str(data)]
    model = tmp_path / "model.npz"
    options = "--hidden 8 --epochs 3 --optimizer adam --standardize --quiet".split()
    assert cli.main(["train", *source, *options, "--save", str(model)]) == 0
    (X_train, y_train), _ = dp.datasets.train_test_split(X, y, test_fraction=0.2, seed=0)
    assert sparse.issparse(X_train)  # the split never made X dense
    expected = dp.Network(
        [40, 8, 2], output="softmax", cost="log_likelihood", init="normal_scaled", seed=0
    )
    expected.fit(X_train, y_train, epochs=3, optimizer="adam", standardize=True, seed=0)
    trained = dp.load(model)
    assert np.array_equal(trained.params, expected.params)
    assert trained.trained_on["data"] == str(data)
    assert cli.main(["predict", str(model), str(data)]) == 0
    predictions = np.load(tmp_path / "words.predictions.npy")
    np.testing.assert_array_equal(predictions, expected.predict(X))
    capsys.readouterr()
    assert cli.main(["evaluate", str(model)]) == 0
    out = capsys.readouterr().out
    assert f"18 samples of {data} (test fraction 0.2, seed 0)" in out
    assert "the test split the model was trained with" in out


def _npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz_members(path, **members):
    """An .npz of the given arrays, or .npy files' bytes, uncompressed (save_npz's own
    members, or others)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in members.items():
            archive.writestr(
                f"{name}.npy", value if isinstance(value, bytes) else _npy_bytes(value)
            )


def _csr_members(X):
    return {"format": np.array(b"csr"), "shape": np.array(X.shape), "data": X.data,
            "indices": X.indices, "indptr": X.indptr}  # fmt: skip


def _bad_npz(tmp_path, case):
    """Write the .npz of a refusal case; return its path."""
    X, _ = _word_counts(n_samples=5, n_features=64)
    path = tmp_path / f"{case}.npz"
    good = _csr_members(X)
    if case == "truncated":
        sparse.save_npz(path, X)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "damaged":
        sparse.save_npz(path, X, compressed=True)
        content = bytearray(path.read_bytes())
        content[60:90] = b"\xff" * 30  # inside the first member's deflated bytes
        path.write_bytes(bytes(content))
    elif case == "dense":
        _npz_members(path, X=X.toarray())
    elif case == "coo":
        sparse.save_npz(path, X.tocoo())
    elif case == "complex":
        _npz_members(path, **{**good, "data": X.data.astype(np.complex128)})
    elif case == "float-indices":
        _npz_members(path, **{**good, "indices": X.indices.astype(np.float64)})
    elif case in ("unsorted", "duplicate"):
        indices = X.indices.copy()
        row = np.flatnonzero(np.diff(X.indptr) >= 2)[0]
        start = X.indptr[row]
        if case == "unsorted":
            indices[start : start + 2] = indices[start : start + 2][::-1]
        else:
            indices[start + 1] = indices[start]
        _npz_members(path, **{**good, "indices": indices})
    elif case == "negative":
        _npz_members(
            path, **{**good, "indices": np.where(X.indices == X.indices[0], -3, X.indices)}
        )
    elif case == "out-of-range":
        _npz_members(path, **{**good, "indices": X.indices + 64 - X.indices.max()})
    elif case == "broken-indptr":
        _npz_members(path, **{**good, "indptr": X.indptr[:-1]})
    elif case == "nan":
        _npz_members(path, **{**good, "data": np.where(X.data > 0, np.nan, 0.0)})
    elif case == "claims-terabytes":
        data = _npy_bytes(X.data)
        announced = f"({X.nnz},), }}".encode()
        claim = b"(90000000000,), }"
        padded = announced + b" " * (len(claim) - len(announced))  # the header keeps its size
        assert padded in data
        _npz_members(path, **{**good, "data": data.replace(padded, claim, 1)})
    elif case == "features":
        sparse.save_npz(path, sparse.csr_matrix(np.ones((3, 50))))
    return path


NPZ_REFUSALS = {
    "truncated": "a damaged or truncated .npz archive",
    "damaged": "a damaged or truncated .npz archive",
    "dense": "not a sparse matrix written by scipy.sparse.save_npz (it holds X)",
    "coo": "holds a scipy.sparse 'COO' matrix; save it as CSR or CSC",
    "complex": "expected real numbers (bool, int or float) in the data, got dtype complex128",
    "float-indices": "expected int32 or int64 indices, got float64",
    "unsorted": "unsorted or repeated indices",
    "duplicate": "unsorted or repeated indices",
    "negative": "a negative index (-3)",
    "out-of-range": "index 64 is out of range for the matrix's 64 rows or columns",
    "broken-indptr": "the sparse structure is broken",
    "nan": "the data hold NaN or infinity (in float64)",
    "claims-terabytes": "its header announces (90000000000,)",
    "features": "holds 50 features, the model takes 64",
}


@pytest.mark.parametrize("case", NPZ_REFUSALS)
def test_predict_refuses_a_bad_npz_naming_the_file_and_the_fault(tmp_path, capsys, case):
    model = tmp_path / "model.npz"
    dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0).save(model)
    path = _bad_npz(tmp_path, case)
    err = _one_line_error(["predict", str(model), str(path)], capsys)
    assert f"deltaprop: error: {path}" in err and NPZ_REFUSALS[case] in err, err
    assert not (tmp_path / f"{case}.predictions.npy").exists()


SVMLIGHT_REFUSALS = {
    "1 3:abc\n": "line 1: the value of feature 3 is not a number: 'abc'",
    "1 3:0.5\n0 2:1 3:": "line 2: the value of feature 3 is not a number: ''",  # truncated
    "1 3\n": "line 1: expected INDEX:VALUE, got '3'",
    "1 0:1\n": "line 1: feature index 0; svmlight indices start at 1",
    "1 -2:1\n": "line 1: feature index -2; svmlight indices start at 1",
    "1 2:1\n\n0 5:1 3:1\n": "line 3: feature indices must increase along a line (unsorted or "
                            "repeated indices), got 3 after 5",
    "1 3:1 3:2\n": "line 1: feature indices must increase along a line (unsorted or "
                    "repeated indices), got 3 after 3",
    "1 3:nan\n": "line 1: the value of feature 3 is 'nan', expected a finite number",
    "1 3:1e999\n": "line 1: the value of feature 3 is '1e999', expected a finite number",
    "1 65:1\n": "line 1: feature index 65 is out of range for the model's 64 inputs",
    "1 3:1 \xe9\n": "line 1: not svmlight text (a byte that is not ASCII)",
    "# a comment alone\n": "holds no sample",
}  # fmt: skip


@pytest.mark.parametrize("content", SVMLIGHT_REFUSALS, ids=range(len(SVMLIGHT_REFUSALS)))
def test_predict_refuses_a_bad_svmlight_file_naming_the_file_and_the_line(
    tmp_path, capsys, content
):
    model, path = tmp_path / "model.npz", tmp_path / "rows.svm"
    dp.Network([64, 10], output="softmax", cost="log_likelihood", seed=0).save(model)
    path.write_bytes(content.encode("latin-1"))
    err = _one_line_error(["predict", str(model), str(path)], capsys)
    assert f"deltaprop: error: {path}: {SVMLIGHT_REFUSALS[content]}" in err, err


def test_train_refuses_sparse_files_without_labels_or_with_two(tmp_path, capsys):
    X, y = _word_counts()
    sparse.save_npz(tmp_path / "x.npz", X)
    _write_svmlight(tmp_path / "x.svm", X, y)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "short.npy", y[:-1])
    (tmp_path / "signed.svm").write_text("-1 1:1\n1 2:1\n")
    train = ["train", "--epochs", "1", "--quiet", "--data"]
    err = _one_line_error([*train, str(tmp_path / "x.npz")], capsys)
    assert "x.npz holds no labels: give their .npy file as --labels" in err
    err = _one_line_error(
        [*train, str(tmp_path / "x.svm"), "--labels", str(tmp_path / "y.npy")], capsys
    )
    assert "x.svm holds its labels (its first column)" in err
    err = _one_line_error([*train, "digits", "--labels", str(tmp_path / "y.npy")], capsys)
    assert "--labels: only for a --data .npz file, not 'digits'" in err
    err = _one_line_error(
        [*train, str(tmp_path / "x.npz"), "--labels", str(tmp_path / "short.npy")], capsys
    )
    assert "short.npy: labels: expected class indices of shape (90,), got (89,)" in err
    err = _one_line_error([*train, str(tmp_path / "signed.svm")], capsys)
    assert "signed.svm: labels: class indices must lie in [0," in err
