"""Training checkpoints: what a run saves after its epochs, and resuming from one.

A checkpoint is a model file (`io`) whose header also holds the run's progress: the
epochs done, whether it stopped, its samples, random state, history, schedule and early
stopping state, and the arguments a resumed run must share. Every field of the progress
is checked (`read_progress`) before anything is restored or trained.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _class_weight, io
from ._container import ModelFormatError
from ._diagnostics import KEYS as DIAGNOSTICS

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["Checkpoints", "read_progress"]

# The fields of a checkpoint's progress, and those a checkpoint of version 0.1.0 lacks.
_PROGRESS_FIELDS = (
    "epochs_done",
    "stopped",
    "n_samples",
    "rng",
    "history",
    "schedule",
    "early_stopping",
    "arguments",
)
_OPTIONAL_FIELDS = ("arguments",)


class Checkpoints:
    """The checkpoints of one run: written by rank 0, read by rank 0 and broadcast.

    Parameters
    ----------
    run : Run
        The run, which is saved and restored.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        settings = run.settings
        self.path, self.every, self.resume = (
            settings.checkpoint,
            settings.checkpoint_every,
            settings.resume,
        )

    def resume_point(self) -> tuple[int, bool]:
        """Restore the run from its checkpoint, when resuming from one that exists.

        Returns
        -------
        epochs_done : int
            The first epoch to train (0 without a checkpoint).
        stopped : bool
            Whether the checkpoint's run had stopped early.

        Raises
        ------
        ModelFormatError
            The checkpoint is damaged, is a model file, or its progress is malformed.
        ValueError
            It comes from another network, data or arguments.
        """
        group = self.run.group
        if not (self.resume and self.path and self._exists()):
            return 0, False
        with group.agreeing():
            record = io.read(self.path) if group.rank == 0 else None
        record = group.broadcast_value(record)  # rank 0's, whatever the others' files hold
        with group.agreeing():
            return self._restore(record)

    def after_epoch(self, epoch: int, stopped: bool) -> None:
        """Save a checkpoint if one is due after this epoch.

        One is due every ``checkpoint_every`` epochs, after the last, and when the run stops.

        Parameters
        ----------
        epoch : int
            The epoch done, from 0.
        stopped : bool
            Whether the run stops after it.
        """
        done = epoch + 1
        due = stopped or done % self.every == 0 or done == self.run.epochs
        if not (self.path and due):
            return
        with self.run.group.agreeing():
            if self.run.group.rank == 0:
                self._save(done, stopped)

    def _exists(self) -> bool:
        """Whether rank 0 (the process that writes checkpoints) has one to resume from."""
        group = self.run.group
        return group.broadcast_value(group.rank == 0 and os.path.exists(self.path))

    def _save(self, epochs_done: int, stopped: bool) -> None:
        """Everything a resumed run needs to continue exactly as this one would."""
        run = self.run
        stopping = run.settings.early_stopping
        progress = {
            "epochs_done": epochs_done,
            "stopped": stopped,
            "n_samples": run.n_samples,
            "rng": run.rng.bit_generator.state,
            "history": run.history,
            "schedule": run.settings.schedule.state(),
            "early_stopping": None if stopping is None else stopping.state(),
            "arguments": arguments(run),
        }
        net = run.net
        best = None if stopping is None else stopping.best_params
        record = io.ModelRecord(
            net.architecture,
            net.params,
            net.optimizer,
            progress,
            best,
            matmul_precision=net.matmul_precision,
            input_scaling=net._input_scaling,
        )
        io.write(self.path, record)

    def _restore(self, record: io.ModelRecord) -> tuple[int, bool]:
        """Continue from the checkpoint: parameters, optimizer, random state, history."""
        run, net = self.run, self.run.net
        if record.training is None:
            raise ModelFormatError(f"{self.path}: a model file, not a training checkpoint")
        if record.architecture != net.architecture:
            raise ValueError(f"checkpoint: {self.path} holds {record.architecture}, not {net!r}")
        _check_same_scaling(self.path, record.input_scaling, net._input_scaling)
        _ProgressReader(self.path, record.training).fields()  # the arguments' first
        self._check_same_arguments(record.training.get("arguments"))
        progress = read_progress(self.path, record.training, run)
        if progress["n_samples"] != run.n_samples:
            raise ValueError(
                f"checkpoint: {self.path} was trained on {progress['n_samples']} "
                f"samples, not {run.n_samples}"
            )
        run.rng.bit_generator.state = progress["rng"]
        run.history.clear()
        run.history.update(progress["history"])
        run.settings.schedule.set_state(progress["schedule"])
        stopping = run.settings.early_stopping
        if stopping is not None:
            stopping.set_state(progress["early_stopping"], record.best_params)
        net.params[...] = record.params
        net.optimizer = run.optimizer = record.optimizer or run.optimizer
        return progress["epochs_done"], progress["stopped"]

    def _check_same_arguments(self, saved: Any) -> None:
        """Before anything is trained: the checkpoint's run had the same arguments."""
        if saved is None:
            return  # written before checkpoints kept their arguments
        import json  # here only: json is costly to import, and resuming is rare

        now = json.loads(json.dumps(arguments(self.run)))  # as the file holds them
        for key, value in now.items():
            if key in saved and saved[key] != value:
                raise ValueError(
                    f"checkpoint: {self.path} was trained with {key} {saved[key]!r}, "
                    f"this run has {value!r}: resume with the arguments of that run, or "
                    "start again without resume=True"
                )


def _check_same_scaling(path: str, saved: Any, now: Any) -> None:
    """Refuse a checkpoint whose run scaled its inputs otherwise than this run does."""
    same = saved.same_as(now) if saved is not None else now is None
    if not same:
        raise ValueError(
            f"checkpoint: {path} was trained with another input scaling than this run's "
            "(fit(standardize=True) learns it from X): resume with the data and the "
            "standardize of that run, or start again without resume=True"
        )


def arguments(run: Run) -> dict[str, Any]:
    """Return the arguments a resumed run must share with the run it continues.

    Parameters
    ----------
    run : Run
        The run, started.

    Returns
    -------
    dict
        JSON-able: batch size, shuffling, dropout, regularisation, optimizer name,
        schedule, validation, training accuracy, extra metrics, class weights, early
        stopping, diagnostics.
    """
    settings = run.settings
    stopping = settings.early_stopping
    return {
        "batch_size": run.batch_size,
        "shuffle": settings.shuffle,
        "dropout": settings.dropout,
        "lmbda": settings.lmbda,
        "l1": settings.l1,
        "optimizer": "lbfgs" if run.optimizer is None else run.optimizer.name,
        "schedule": settings.schedule.describe(),
        "validation_data": run.validation is not None,
        "train_accuracy": settings.train_accuracy,
        "metrics": sorted(settings.metrics),
        "class_weight": _class_weight.describe(settings.class_weight),
        "diagnostics": settings.diagnostics,
        "early_stopping": None
        if stopping is None
        else [stopping.monitor, stopping.mode, stopping.patience, stopping.min_delta],
    }


# ------------------------------------------------------------- the checked reader
def read_progress(path: str, progress: dict[str, Any], run: Run) -> dict[str, Any]:
    """Return a checkpoint's progress with every field checked against the run.

    Parameters
    ----------
    path : str
        The checkpoint, for messages.
    progress : dict
        Its progress, as read from the header.
    run : Run
        The run that resumes from it (its history's keys, schedule, early stopping, and
        random generator).

    Returns
    -------
    dict
        ``progress``, every field of the type and in the range a run writes.

    Raises
    ------
    ModelFormatError
        A field is missing, unexpected, of the wrong type or out of range; the message
        names it.
    """
    checked = _ProgressReader(path, progress)
    checked.fields()
    epochs_done = checked.integer("epochs_done", 0)
    checked.boolean("stopped")
    checked.integer("n_samples", 1)
    checked.history(run.recorded_keys(), epochs_done)
    checked.state("schedule", run.settings.schedule.state())
    stopping = run.settings.early_stopping
    if stopping is not None:
        checked.early_stopping()
    checked.rng(run.rng)
    return progress


class _ProgressReader:
    """Checks of one checkpoint's progress fields, each naming its field."""

    def __init__(self, path: str, progress: dict[str, Any]) -> None:
        self.path, self.progress = path, progress

    def refuse(self, field: str, expected: str) -> None:
        value = repr(self.progress.get(field, None))
        value = value if len(value) <= 60 else value[:57] + "..."
        raise ModelFormatError(
            f"{self.path}: its training progress is malformed: {field}: expected {expected}, "
            f"got {value}"
        )

    def fields(self) -> None:
        """Check the progress's fields, none missing or unexpected; its arguments an object."""
        present = set(self.progress)
        missing = [f for f in _PROGRESS_FIELDS if f not in present and f not in _OPTIONAL_FIELDS]
        unexpected = sorted(present - set(_PROGRESS_FIELDS))
        if missing or unexpected:
            raise ModelFormatError(
                f"{self.path}: its training progress is malformed: fields missing {missing}, "
                f"unexpected {unexpected}"
            )
        if not isinstance(self.progress.get("arguments", {}), dict):
            self.refuse("arguments", "an object")

    def integer(self, field: str, low: int, high: float = math.inf) -> int:
        value = self.progress[field]
        if type(value) is not int or not low <= value <= high:
            high_text = "" if high == math.inf else f" and <= {high}"
            self.refuse(field, f"an integer >= {low}{high_text}")
        return value

    def boolean(self, field: str) -> None:
        if type(self.progress[field]) is not bool:
            self.refuse(field, "true or false")

    def history(self, keys: list[str], epochs_done: int) -> None:
        history = self.progress["history"]
        if not isinstance(history, dict) or sorted(history) != sorted(keys):
            self.refuse("history", f"an object of the lists {', '.join(keys)}")
        for key, values in history.items():
            if not isinstance(values, list) or len(values) != epochs_done:
                self.refuse("history", f"{key!r} a list of {epochs_done} numbers")
            if key in DIAGNOSTICS:
                self.per_layer_history(key, values)
            elif not all(_is_number(value) for value in values):
                self.refuse("history", f"{key!r} a list of numbers")

    def per_layer_history(self, key: str, values: list) -> None:
        """Check a diagnostic's epochs: lists of one number or null per layer, all alike."""
        lengths = {len(value) if isinstance(value, list) else -1 for value in values}
        if (
            len(lengths) > 1
            or -1 in lengths
            or not all(value is None or _is_number(value) for epoch in values for value in epoch)
        ):
            self.refuse("history", f"{key!r} a list of lists of numbers or null, one per layer")

    def state(self, field: str, template: dict[str, Any]) -> None:
        """Check a state object: the keys of ``template``, each a number (or None) as there."""
        state = self.progress[field]
        if not isinstance(state, dict) or sorted(state) != sorted(template):
            self.refuse(field, f"an object of {sorted(template)}")
        for key, like in template.items():
            if not _same_kind(state[key], like):
                self.refuse(field, f"{key!r} {_kind(like)}")

    def early_stopping(self) -> None:
        state = self.progress["early_stopping"]
        keys = {"best_cost", "best_epoch", "epochs_without_improvement"}
        if (
            not isinstance(state, dict)
            or not {"best_cost", "epochs_without_improvement"} <= set(state)
            or not set(state) <= keys
        ):
            self.refuse("early_stopping", f"an object of {sorted(keys)}")
        best, best_epoch = state["best_cost"], state.get("best_epoch")
        if best is not None and not (_is_number(best) and math.isfinite(best)):
            self.refuse("early_stopping", "'best_cost' a finite number or null")
        # An EarlyStopping kept between fit calls counts epochs of the calls before too.
        if best_epoch is not None and not (type(best_epoch) is int and best_epoch >= 0):
            self.refuse("early_stopping", "'best_epoch' an epoch (an integer >= 0) or null")
        stalled = state["epochs_without_improvement"]
        if type(stalled) is not int or stalled < 0:
            self.refuse("early_stopping", "'epochs_without_improvement' an integer >= 0")

    def rng(self, rng: np.random.Generator) -> None:
        """Check the state of a bit generator of the run's kind, tried on a fresh one."""
        state = self.progress["rng"]
        kind = type(rng.bit_generator)
        if not isinstance(state, dict) or state.get("bit_generator") != kind.__name__:
            self.refuse("rng", f"the state of a {kind.__name__} bit generator")
        try:
            kind().state = state
        except (TypeError, ValueError, KeyError, OverflowError):
            self.refuse("rng", f"the state of a {kind.__name__} bit generator")


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _same_kind(value: Any, like: Any) -> bool:
    """Whether ``value`` may stand where a fresh state holds ``like``.

    None there is a number not yet known (a best cost): None or a finite number; a count
    (int) a count; a float any number; anything else a value of its type.
    """
    if like is None:
        return value is None or (_is_number(value) and math.isfinite(value))
    if type(like) is bool:
        return type(value) is bool
    if type(like) is int:
        return type(value) is int and value >= 0
    if isinstance(like, (float, np.floating)):
        return _is_number(value)
    return type(value) is type(like)


def _kind(like: Any) -> str:
    if like is None:
        return "a finite number or null"
    if type(like) is bool:
        return "true or false"
    if type(like) is int:
        return "an integer >= 0"
    if isinstance(like, (float, np.floating)):
        return "a number"
    return f"a {type(like).__name__}"
