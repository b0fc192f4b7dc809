"""fit's progress output: a line per epoch, a bar on a terminal, how the run ended.

Progress output never costs the training: a standard output that fails (closed, full, a
pipe whose reader left) is remembered, and nothing more is printed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._stopping import EarlyStopping, History

__all__ = ["Progress"]


class Progress:
    """What one run prints, if anything.

    Parameters
    ----------
    enabled : bool
        Whether to print (``verbose``, on rank 0 only).

    Attributes
    ----------
    error : OSError, ValueError or None
        The first failure of standard output; nothing is printed after it.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.error = enabled, None

    def bar(self, epoch: int, epochs: int, n: int):
        """Return a tqdm bar for an epoch on a terminal; None elsewhere or when quiet.

        Logs get one line per epoch instead.

        Parameters
        ----------
        epoch, epochs : int
            The epoch (from 0), and how many the run has.
        n : int
            Rows of the epoch.

        Returns
        -------
        tqdm.tqdm or None
        """
        if not self.enabled:
            return None
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

    def epoch(self, epoch: int, epochs: int, history: dict[str, list[float]]) -> None:
        """Print an epoch's line: its metrics, learning rate and time.

        Parameters
        ----------
        epoch, epochs : int
            The epoch (from 0), and how many the run has.
        history : dict of str to list of float
            The run's history, the epoch's metrics last.
        """
        if self.enabled:
            self._print(epoch_line(epoch, epochs, {k: v[-1] for k, v in history.items() if v}))

    def ending(self, history: History, stopping: EarlyStopping | None, epochs: int) -> None:
        """Say how the run ended, if early stopping or a callback ended it.

        Parameters
        ----------
        history : History
            The run's, with ``stopped_epoch`` and ``restored_epoch``.
        stopping : EarlyStopping or None
            The run's stopping rule.
        epochs : int
            The epochs the run had.
        """
        ended_early = history.stopped_epoch is not None or history.restored_epoch is not None
        if self.enabled and ended_early:
            self._print(_ending(history, stopping, epochs))

    def _print(self, line: str) -> None:
        if self.error is not None:
            return
        try:
            print(line, flush=True)
        except (OSError, ValueError) as error:  # ValueError: a closed stream
            self.error = error


def _ending(history: History, stopping: EarlyStopping | None, epochs: int) -> str:
    """Say, in the per-epoch lines' numbering (from 1), how a run ended."""
    parts = []
    if history.stopped_epoch is not None:
        done = history.stopped_epoch + 1
        if stopping is not None and stopping.stopped_epoch == history.stopped_epoch:
            parts.append(
                f"early stopping after epoch {done}/{epochs}: {stopping.monitor} has not "
                f"improved for {stopping.epochs_without_improvement} epochs"
            )
        else:
            parts.append(f"a callback stopped training after epoch {done}/{epochs}")
    if history.restored_epoch is not None:
        parts.append(
            f"restored the weights of epoch {history.restored_epoch + 1} "
            f"({stopping.monitor} {stopping.best:.4f})"
        )
    return "; ".join(parts)


def epoch_line(
    epoch: int, epochs: int, metrics: dict[str, float], names: dict[str, str] | None = None
) -> str:
    """Return the line of one epoch's metrics, each under its name in ``names`` if it has one."""
    names = names or {}
    parts = [f"epoch {epoch + 1}/{epochs}"]
    for key in ("cost", "accuracy", "val_cost", "val_accuracy"):
        if key in metrics:
            parts.append(f"{names.get(key, key)} {metrics[key]:.4f}")
    if "lr" in metrics:
        parts.append(f"lr {metrics['lr']:.3g}")
    parts.append(f"{metrics['time']:.2f} s")
    return "  ".join(parts)
