"""The epoch loop of `Network.fit`: schedules, validation, early stopping, callbacks and
progress between epochs; each epoch itself runs in the core."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import optim, schedules

if TYPE_CHECKING:
    from .network import Network

# With a progress bar an epoch runs in about this many core calls, so the bar can move.
_PROGRESS_STEPS = 50
# Without one, an epoch runs in calls of about this many rows: Python sees Ctrl-C (and
# KeyboardInterrupt leaves the weights of the last batch done) between calls.
_ROWS_PER_CALL = 4096


class DivergenceError(FloatingPointError):
    """Training produced a non-finite cost, gradient or parameter.

    The network keeps the parameters (and optimizer state) it had before the batch to blame;
    ``epoch`` and ``batch`` (both from 0) name that batch, and ``history`` holds the metrics
    of the epochs completed before it.
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int | None = None,
        batch: int,
        history: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__(message)
        self.epoch, self.batch, self.history = epoch, batch, history


@dataclass
class EarlyStopping:
    """Stop after `patience` epochs without the validation cost falling by `min_delta`."""

    patience: int
    min_delta: float
    restore_best: bool
    best_cost: float = np.inf
    best_params: np.ndarray | None = None
    epochs_without_improvement: int = 0

    def should_stop(self, net: Network, val_cost: float) -> bool:
        if val_cost < self.best_cost - self.min_delta:
            self.best_cost, self.epochs_without_improvement = val_cost, 0
            if self.restore_best:
                self.best_params = net.params.copy()
            return False
        self.epochs_without_improvement += 1
        return self.epochs_without_improvement >= self.patience

    def restore(self, net: Network) -> None:
        if self.restore_best and self.best_params is not None:
            net.params[...] = self.best_params

    def state(self) -> dict[str, Any]:
        best = None if np.isinf(self.best_cost) else self.best_cost
        return {"best_cost": best, "epochs_without_improvement": self.epochs_without_improvement}

    def set_state(self, state: dict[str, Any], best_params: np.ndarray | None) -> None:
        self.best_cost = np.inf if state["best_cost"] is None else float(state["best_cost"])
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
        self.best_params = best_params


@dataclass
class TrainingRun:
    """Everything one call of `Network.fit` needs, validated."""

    net: Network
    data: tuple[np.ndarray, np.ndarray, np.ndarray | None]  # X, Y, sample weights
    validation: tuple[np.ndarray, np.ndarray] | None
    epochs: int
    batch_size: int
    optimizer: optim.Optimizer
    lmbda: float
    l1: float
    dropout: float
    schedule: schedules.Schedule
    shuffle: bool
    rng: np.random.Generator
    early_stopping: EarlyStopping | None
    callbacks: Sequence[Callable[[int, dict[str, float]], Any]]
    train_accuracy: bool
    verbose: bool
    checkpoint: str | None = None
    checkpoint_every: int = 1
    resume: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)

    def run(self) -> dict[str, list[float]]:
        # The network's own history grows epoch by epoch, so that an interrupted fit
        # leaves the metrics of the epochs it completed in net.history.
        self.history = self.net.history = {key: [] for key in self._history_keys()}
        start, stopped = 0, False
        if self.resume and self.checkpoint and os.path.exists(self.checkpoint):
            start, stopped = self._resume()
        for epoch in range(start, self.epochs):
            if stopped:
                break
            self.optimizer.lr = float(self.schedule(epoch, self.optimizer.lr, self.history))
            started = time.perf_counter()
            cost = self._train_epoch(epoch)
            self._record(cost, time.perf_counter() - started)
            if self.verbose:
                _print_progress(epoch, self.epochs, self.history)
            stopped = self._should_stop(epoch)
            if self.checkpoint and (
                stopped or (epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.epochs
            ):
                self._save_checkpoint(epoch + 1, stopped)
        if self.early_stopping is not None:
            self.early_stopping.restore(self.net)
        return self.history

    # ------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, epochs_done: int, stopped: bool) -> None:
        """Everything a resumed run needs to continue exactly as this one would."""
        from .io import save_checkpoint

        stopping = self.early_stopping
        progress = {
            "epochs_done": epochs_done,
            "stopped": stopped,
            "n_samples": len(self.data[0]),
            "rng": self.rng.bit_generator.state,
            "history": self.history,
            "schedule": self.schedule.state(),
            "early_stopping": None if stopping is None else stopping.state(),
        }
        best = None if stopping is None else stopping.best_params
        save_checkpoint(self.net, self.checkpoint, progress, best)

    def _resume(self) -> tuple[int, bool]:
        """Continue from the checkpoint: parameters, optimizer, random state, history."""
        from .io import ModelFormatError, load_checkpoint

        saved, progress, best = load_checkpoint(self.checkpoint)
        net = self.net
        described = (net.sizes, net.activation, net.output, net.cost_name, net.dtype)
        if (saved.sizes, saved.activation, saved.output, saved.cost_name, saved.dtype) != (
            described
        ):
            raise ValueError(f"checkpoint: {self.checkpoint} holds {saved!r}, not {net!r}")
        try:
            if progress["n_samples"] != len(self.data[0]):
                raise ValueError(
                    f"checkpoint: {self.checkpoint} was trained on {progress['n_samples']} "
                    f"samples, not {len(self.data[0])}"
                )
            self.rng.bit_generator.state = progress["rng"]
            self.history.clear()
            self.history.update(progress["history"])
            self.schedule.set_state(progress["schedule"])
            if self.early_stopping is not None:
                self.early_stopping.set_state(progress["early_stopping"], best)
            epochs_done, stopped = int(progress["epochs_done"]), bool(progress["stopped"])
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, ValueError) and str(error).startswith("checkpoint:"):
                raise
            raise ModelFormatError(
                f"{self.checkpoint}: its training progress is malformed ({error!r})"
            ) from error
        net.params[...] = saved.params
        net.optimizer = self.optimizer = saved.optimizer or self.optimizer
        return epochs_done, stopped

    def _history_keys(self) -> list[str]:
        keys = ["cost"]
        if self.train_accuracy:
            keys.append("accuracy")
        if self.validation is not None:
            keys.append("val_cost")
            if self.net.output != "identity":
                keys.append("val_accuracy")
        return [*keys, "lr", "time"]

    def _train_epoch(self, epoch: int) -> float:
        n = len(self.data[0])
        order = self.rng.permutation(n) if self.shuffle else None
        dropout_seed = int(self.rng.integers(2**63))
        rule = self.optimizer.rule(self.lmbda / n, self.l1 / n)
        bar = _progress_bar(epoch, self.epochs, n) if self.verbose else None
        rows_per_call = self._rows_per_call(n, bar is not None)
        total_cost = total_weight = 0.0
        try:
            for start in range(0, n, rows_per_call):
                stop = min(n, start + rows_per_call)
                cost, weight, diverged = self.net._train_rows(
                    self.data,
                    order,
                    start,
                    stop,
                    self.batch_size,
                    rule,
                    self.dropout,
                    dropout_seed,
                )
                if diverged is not None:
                    raise DivergenceError(
                        f"training diverged in epoch {epoch}, batch {diverged}: a non-finite "
                        "cost, gradient or parameter; the network keeps the weights it had "
                        "before that batch",
                        epoch=epoch,
                        batch=diverged,
                        history=self.history,
                    )
                total_cost, total_weight = total_cost + cost * weight, total_weight + weight
                if bar is not None:
                    bar.update(stop - start)
                    running = total_cost / total_weight if total_weight else 0.0
                    bar.set_postfix(cost=f"{running:.4f}", refresh=False)
            if bar is not None:
                bar.refresh()  # tqdm skips redraws within 0.1 s: show the epoch's end
        finally:
            if bar is not None:
                bar.close()
        return total_cost / total_weight if total_weight else 0.0

    def _rows_per_call(self, n: int, progress: bool) -> int:
        """Whole batches per core call: about _ROWS_PER_CALL rows, or 1/50 of the epoch
        when a progress bar shows."""
        n_batches = -(-n // self.batch_size)
        if progress:
            batches = max(1, n_batches // _PROGRESS_STEPS)
        else:
            batches = max(1, _ROWS_PER_CALL // self.batch_size)
        return batches * self.batch_size

    def _record(self, cost: float, seconds: float) -> None:
        history, net = self.history, self.net
        history["cost"].append(cost)
        if self.train_accuracy:
            history["accuracy"].append(net._accuracy(*self.data[:2]))
        if self.validation is not None:
            X_val, Y_val = self.validation
            history["val_cost"].append(net._core.cost(net.params, X_val, Y_val))
            if "val_accuracy" in history:
                history["val_accuracy"].append(net._accuracy(X_val, Y_val))
        history["lr"].append(self.optimizer.lr)
        history["time"].append(seconds)

    def _should_stop(self, epoch: int) -> bool:
        metrics = {key: values[-1] for key, values in self.history.items()}
        stop = False
        for callback in self.callbacks:
            stop = bool(callback(epoch, metrics)) or stop
        if self.early_stopping is not None:
            stop = self.early_stopping.should_stop(self.net, metrics["val_cost"]) or stop
        return stop


def _progress_bar(epoch: int, epochs: int, n: int):
    """A tqdm bar on a terminal; None elsewhere, so logs get one line per epoch only."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=n,
        desc=f"epoch {epoch + 1}/{epochs}",
        unit=" samples",
        leave=False,
        disable=None,
        file=sys.stderr,
    )
    if bar.disable:
        bar.close()
        return None
    return bar


def _print_progress(epoch: int, epochs: int, history: dict[str, list[float]]) -> None:
    parts = [f"epoch {epoch + 1}/{epochs}"]
    for key in ("cost", "accuracy", "val_cost", "val_accuracy"):
        if key in history:
            parts.append(f"{key} {history[key][-1]:.4f}")
    parts.append(f"lr {history['lr'][-1]:.3g}")
    parts.append(f"{history['time'][-1]:.2f} s")
    print("  ".join(parts), flush=True)
