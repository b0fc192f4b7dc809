"""The command line trains on the shipped digits and reports errors in one line."""

from __future__ import annotations

import subprocess
import sys

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


def test_bad_option_value_is_one_line_and_exit_code_2(capsys):
    assert cli.main(["--epochs", "1", "--lr", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == "deltaprop: error: lr: expected a finite number > 0, got -1.0\n"


def test_python_dash_m_runs():
    result = subprocess.run(
        [sys.executable, "-m", "deltaprop", "--epochs", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
