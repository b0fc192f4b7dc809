"""The data set and split a model file records that ``deltaprop train`` trained on.

``deltaprop train`` writes them into the model (``Network.trained_on``), and ``deltaprop
evaluate`` grades the model on that split's test rows by default, so that no training row is
graded: the digits, or a sparse data file, with their test fraction and seed; Fashion-MNIST
or a directory of IDX files, with their own test files.
"""

from __future__ import annotations

import argparse
import os

from ._data_files import is_data_file

__all__ = ["DEFAULT_SPLIT", "described_split", "evaluation_split", "recorded_split", "trained_on"]


def trained_on(args: argparse.Namespace) -> dict:
    """Return the data set and split ``deltaprop train`` trains on, for the model file."""
    if args.data == "digits":
        return {"data": "digits", "test_fraction": args.test_fraction, "seed": args.seed}
    if args.data == "fashion-mnist":
        return {"data": "fashion-mnist"}  # its own split: the t10k files are the test split
    if is_data_file(args.data):  # split as the digits are; found from anywhere
        recorded = {"data": os.path.abspath(args.data)}
        if args.labels is not None:
            recorded["labels"] = os.path.abspath(args.labels)
        return {**recorded, "test_fraction": args.test_fraction, "seed": args.seed}
    return {"data": os.path.abspath(args.data)}  # a directory: found from anywhere


DEFAULT_SPLIT = {"data": "digits", "labels": None, "test_fraction": 0.2, "seed": 0}


def evaluation_split(args: argparse.Namespace, trained_on: dict | None) -> tuple[dict, str]:
    """Return the data set and split ``deltaprop evaluate`` uses, and where they come from.

    By default those the model file records it was trained on, so that no training row is
    graded; options given replace them (an explicit choice, said so), and a file that does
    not record them gets the defaults of ``deltaprop train``.
    """
    data, labels = args.data, args.labels
    if data is not None and data not in ("digits", "fashion-mnist"):
        data = os.path.abspath(data)  # a directory or a file, as train records it
    if labels is not None:
        labels = os.path.abspath(labels)
    given = {
        key: value
        for key, value in (
            ("data", data),
            ("labels", labels),
            ("test_fraction", args.test_fraction),
            ("seed", args.seed),
        )
        if value is not None
    }
    if data is not None:
        given.setdefault("labels", None)  # the recorded labels are those of the recorded data
    recorded = recorded_split(trained_on)
    split = {**DEFAULT_SPLIT, **(recorded or {}), **given}
    if recorded is None:
        source = "the model file does not record its training split: " + (
            "as given" if given else "the defaults"
        )
    elif not given or all(recorded.get(key) == value for key, value in given.items()):
        source = "the test split the model was trained with, as its file records"
    else:
        source = (
            f"as given, not the split the model was trained with ({described_split(recorded)}):"
            " some of these rows may be ones it was trained on"
        )
    return split, source


def recorded_split(trained_on: dict | None) -> dict | None:
    """Return the split a model file records (None: none, or not one this program writes)."""
    if not trained_on or not isinstance(trained_on.get("data"), str):
        return None
    data, labels = trained_on["data"], trained_on.get("labels")
    if data != "digits" and not is_data_file(data):
        return {**DEFAULT_SPLIT, "data": data}
    fraction, seed = trained_on.get("test_fraction"), trained_on.get("seed")
    if not (isinstance(fraction, float) and 0 < fraction <= 1):
        return None
    if not (type(seed) is int and seed >= 0):
        return None
    if not (labels is None or isinstance(labels, str)):
        return None
    return {"data": data, "labels": labels, "test_fraction": fraction, "seed": seed}


def described_split(split: dict) -> str:
    if split["data"] != "digits" and not is_data_file(split["data"]):
        return f"{split['data']} (its test files)"
    return f"{split['data']} (test fraction {split['test_fraction']:g}, seed {split['seed']})"
