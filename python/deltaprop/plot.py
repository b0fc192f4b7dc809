"""Plots of a training history: learning curves from the dict ``Network.fit`` returns.

matplotlib is an optional extra (``pip install 'deltaprop[plot]'``): it is imported only when
a plot is drawn, so ``import deltaprop.plot`` works without it. Figures are built on the Agg
canvas directly, never through pyplot's global state, so plotting works headless and from
threads, and no figure stays registered (or open) after its last reference goes.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._files import write_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["learning_curves"]

_MISSING_MATPLOTLIB = "deltaprop.plot needs matplotlib: pip install 'deltaprop[plot]'"
# Every per-epoch key Network.fit may return; others in the history are ignored.
_KEYS = ("cost", "val_cost", "accuracy", "val_accuracy", "lr", "time")
# Up to this many epochs each value also gets a marker, so that a single epoch, or one
# epoch between NaN gaps, is still visible.
_MARKERS_UP_TO = 50
_TRAIN = {"color": "C0", "label": "training"}
_VAL = {"color": "C1", "label": "validation"}


def learning_curves(
    history: Mapping[str, Any],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Plot cost and accuracy per epoch, training and validation, side by side.

    Parameters
    ----------
    history : mapping of str to sequence of float
        The dict returned by `Network.fit`: one value per epoch under ``"cost"`` (training
        cost, required, at least one epoch) and optionally ``"val_cost"``, ``"accuracy"``
        (training), ``"val_accuracy"``, ``"lr"`` (learning rate) and ``"time"`` (seconds per
        epoch; checked but not drawn). Other keys are ignored. NaN (and infinite) values are
        drawn as gaps.
    path : str, os.PathLike or None, default=None
        Where to write the figure as a PNG (always PNG, whatever the suffix). The file is
        written atomically: to a temporary file in the same directory, flushed to disk, then
        renamed onto `path`, so readers see the old file or the complete new one, never part
        of one. A file that is replaced keeps its permission bits. None: no file.
    title : str or None, default=None
        Title above the panels; None: none.

    Returns
    -------
    fig : matplotlib.figure.Figure
        ``fig.axes[0]`` holds the cost: training first (``get_lines()[0]``), then validation.
        With any accuracy key, ``fig.axes[1]`` holds the accuracy in the same order. When the
        learning rate changes across epochs, one more axes, a twin of the cost axes sharing
        its x-axis, holds it as a dashed grey line labelled "learning rate" (a constant
        learning rate is not drawn). So ``len(fig.axes)`` is 1, 2 or 3.

    Raises
    ------
    ValueError
        If `history` is not a mapping, has no ``"cost"`` or an empty one, or a key listed
        above holds something other than a sequence of real numbers as long as ``"cost"``;
        the message names the key.
    ImportError
        If matplotlib is not installed.
    OSError
        If `path` cannot be written; an existing file there is left unchanged.

    Examples
    --------
    >>> history = net.fit(X, y, epochs=10, validation_data=(X_val, y_val))  # doctest: +SKIP
    >>> deltaprop.plot.learning_curves(history, "curves.png", title="digits")  # doctest: +SKIP
    """
    series = _check_history(history)
    Figure, FigureCanvasAgg, MaxNLocator = _matplotlib()

    n_epochs = len(series["cost"])
    epochs = np.arange(1, n_epochs + 1)
    style = {"marker": "o", "markersize": 3} if n_epochs <= _MARKERS_UP_TO else {}
    has_accuracy = "accuracy" in series or "val_accuracy" in series
    lr = series.get("lr")
    lr_varies = lr is not None and np.unique(lr[np.isfinite(lr)]).size > 1

    fig = Figure(figsize=(10.0 if has_accuracy else 5.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_accuracy else 1, squeeze=False)[0]

    ax_cost = axes[0]
    ax_cost.plot(epochs, series["cost"], **_TRAIN, **style)
    if "val_cost" in series:
        ax_cost.plot(epochs, series["val_cost"], **_VAL, **style)
    ax_cost.set_ylabel("cost")
    legend_on, handles = ax_cost, list(ax_cost.get_lines())
    if lr_varies:
        ax_lr = ax_cost.twinx()
        ax_lr.plot(epochs, lr, color="0.45", linestyle="--", label="learning rate")
        ax_lr.set_ylabel("learning rate", color="0.35")
        ax_lr.tick_params(axis="y", colors="0.35")
        # The twin is drawn over the cost axes: its legend would otherwise be hidden.
        legend_on, handles = ax_lr, handles + list(ax_lr.get_lines())
    legend_on.legend(handles=handles)

    if has_accuracy:
        ax_accuracy = axes[1]
        if "accuracy" in series:
            ax_accuracy.plot(epochs, series["accuracy"], **_TRAIN, **style)
        if "val_accuracy" in series:
            ax_accuracy.plot(epochs, series["val_accuracy"], **_VAL, **style)
        ax_accuracy.set_ylabel("accuracy")
        ax_accuracy.legend()

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    if title is not None:
        fig.suptitle(title)

    if path is not None:
        write_atomically(path, lambda file: fig.savefig(file, format="png"))
    return fig


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ImportError(_MISSING_MATPLOTLIB) from error
    return Figure, FigureCanvasAgg, MaxNLocator


def _check_history(history: Any) -> dict[str, np.ndarray]:
    """Return the known keys of `history` as float64 arrays of equal length, NaN for inf."""
    if not isinstance(history, Mapping):
        raise ValueError(
            f"history: expected the dict returned by Network.fit, got {type(history).__name__}"
        )
    if "cost" not in history:
        raise ValueError("history['cost']: missing; expected the training cost per epoch")
    series = {key: _as_series(history[key], key) for key in _KEYS if key in history}
    n_epochs = len(series["cost"])
    if n_epochs == 0:
        raise ValueError("history['cost']: empty; expected the training cost of at least one epoch")
    for key, values in series.items():
        if len(values) != n_epochs:
            raise ValueError(
                f"history[{key!r}]: expected one value per epoch ({n_epochs}, as in 'cost'), "
                f"got {len(values)}"
            )
    return series


def _as_series(values: Any, key: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise ValueError(f"history[{key!r}]: expected a 1-d sequence, got shape {values.shape}")
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(
            f"history[{key!r}]: expected a list of numbers, got {type(values).__name__}"
        )
    for i, value in enumerate(values):
        # bool is an int, but True as a cost is a bug upstream, not a value to plot.
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ValueError(f"history[{key!r}][{i}]: expected a real number, got {value!r}")
    out = np.array([float(value) for value in values], dtype=np.float64)
    out[~np.isfinite(out)] = math.nan  # inf would stretch or break the axis; draw a gap
    return out
