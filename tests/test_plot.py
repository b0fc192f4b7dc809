"""deltaprop.plot: learning curves drawn from a training history, written atomically as PNG."""

from __future__ import annotations

import math
import os
import stat
import sys

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What learning_curves imports; all must be hidden to simulate a missing matplotlib, because
# a cached submodule would still import with only its parent set to None.
MATPLOTLIB_MODULES = (
    "matplotlib",
    "matplotlib.backends",
    "matplotlib.backends.backend_agg",
    "matplotlib.figure",
    "matplotlib.ticker",
)

COST = [2.0, 1.2, 0.8, 0.6, 0.5]
VAL_COST = [2.1, 1.4, 1.0, 0.9, 0.95]
ACCURACY = [0.30, 0.55, 0.70, 0.80, 0.85]
VAL_ACCURACY = [0.28, 0.50, 0.66, 0.74, 0.75]
DECAYING_LR = [0.5, 0.25, 0.125, 0.0625, 0.03125]
TIME = [0.11, 0.10, 0.10, 0.12, 0.10]

# history, and the number of axes: cost [+ accuracy] [+ twin learning-rate axes]
HISTORIES = {
    "cost": ({"cost": COST}, 1),
    "cost-val": ({"cost": COST, "val_cost": VAL_COST}, 1),
    "fit-val": ({"cost": COST, "val_cost": VAL_COST, "val_accuracy": VAL_ACCURACY}, 2),
    "all": (
        {
            "cost": COST,
            "val_cost": VAL_COST,
            "accuracy": ACCURACY,
            "val_accuracy": VAL_ACCURACY,
            "lr": DECAYING_LR,
            "time": TIME,
        },
        3,
    ),
    "constant-lr": ({"cost": COST, "accuracy": ACCURACY, "lr": [0.5] * 5}, 2),
    "varying-lr": ({"cost": COST, "lr": DECAYING_LR}, 2),
    "one-epoch": ({"cost": [1.0], "val_accuracy": [0.5]}, 2),
}


@pytest.fixture
def mpl():
    import matplotlib  # a test extra: these tests must run, not skip

    return matplotlib


def lines_by_label(ax) -> dict[str, np.ndarray]:
    return {line.get_label(): np.asarray(line.get_ydata()) for line in ax.get_lines()}


@pytest.mark.parametrize(("history", "n_axes"), HISTORIES.values(), ids=HISTORIES.keys())
def test_writes_png_with_the_documented_axes(mpl, tmp_path, history, n_axes):
    import matplotlib.image

    path = tmp_path / "curves.png"
    fig = plot.learning_curves(history, path, title="digits")

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, channels = matplotlib.image.imread(path).shape
    assert 200 <= height <= 2000 and 200 <= width <= 4000 and channels in (3, 4)
    assert len(fig.axes) == n_axes
    assert fig.get_suptitle() == "digits"
    assert os.listdir(tmp_path) == ["curves.png"]

    ax_cost = fig.axes[0]
    np.testing.assert_array_equal(
        ax_cost.get_lines()[0].get_xdata(), np.arange(1, len(history["cost"]) + 1)
    )
    np.testing.assert_array_equal(ax_cost.get_lines()[0].get_ydata(), history["cost"])
    expected_labels = {"training", "validation"} if "val_cost" in history else {"training"}
    assert lines_by_label(ax_cost).keys() == expected_labels
    if "val_cost" in history:
        np.testing.assert_array_equal(ax_cost.get_lines()[1].get_ydata(), history["val_cost"])
    assert ax_cost.get_xlabel() == "epoch" and ax_cost.get_ylabel() == "cost"


def test_accuracy_panel_holds_training_then_validation(mpl):
    history = {"cost": COST, "accuracy": ACCURACY, "val_accuracy": VAL_ACCURACY}
    fig = plot.learning_curves(history)
    ax_accuracy = fig.axes[1]
    assert ax_accuracy.get_ylabel() == "accuracy"
    lines = lines_by_label(ax_accuracy)
    np.testing.assert_array_equal(lines["training"], ACCURACY)
    np.testing.assert_array_equal(lines["validation"], VAL_ACCURACY)


def test_varying_lr_is_a_dashed_twin_of_the_cost_axes(mpl):
    fig = plot.learning_curves({"cost": COST, "lr": DECAYING_LR})
    ax_cost, ax_lr = fig.axes
    assert ax_lr.get_shared_x_axes().joined(ax_cost, ax_lr)
    (line,) = ax_lr.get_lines()
    assert line.get_label() == "learning rate" and line.get_linestyle() == "--"
    np.testing.assert_array_equal(line.get_ydata(), DECAYING_LR)
    assert ax_lr.get_ylabel() == "learning rate"
    # One legend for all three curves, on the twin that is drawn on top.
    legend_labels = [text.get_text() for text in ax_lr.get_legend().get_texts()]
    assert legend_labels == ["training", "learning rate"]


def test_nan_is_a_gap_and_inf_too(mpl):
    cost = [1.0, math.nan, 0.5, math.inf, 0.25]
    fig = plot.learning_curves({"cost": cost})
    ydata = fig.axes[0].get_lines()[0].get_ydata()
    np.testing.assert_array_equal(ydata, [1.0, math.nan, 0.5, math.nan, 0.25])
    bottom, top = fig.axes[0].get_ylim()
    assert math.isfinite(bottom) and math.isfinite(top)


def test_accepts_numpy_values_and_no_path_writes_nothing(mpl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    history = {"cost": np.array(COST, dtype=np.float32), "val_cost": [np.float64(v) for v in COST]}
    fig = plot.learning_curves(history)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), COST, rtol=1e-6)
    assert os.listdir(tmp_path) == []


def test_history_from_fit(mpl, tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, size=40)
    net = dp.Network([4, 5, 3], output="softmax", cost="log_likelihood", seed=0)
    history = net.fit(X, y, epochs=3, lr=0.5, validation_data=(X[:10], y[:10]))
    fig = plot.learning_curves(history, str(tmp_path / "fit.png"))
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), history["cost"])


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ({}, r"history\['cost'\]"),
        ({"val_cost": [1.0]}, r"history\['cost'\]"),
        ({"cost": []}, r"history\['cost'\]"),
        ([1.0, 2.0], "history"),
        ({"cost": [1.0, 2.0], "val_cost": [1.0]}, r"history\['val_cost'\]"),
        ({"cost": [1.0], "val_accuracy": [0.5, 0.6]}, r"history\['val_accuracy'\]"),
        ({"cost": [1.0, 2.0], "lr": [0.5]}, r"history\['lr'\]"),
        ({"cost": [1.0, 2.0], "time": [0.1, 0.1, 0.1]}, r"history\['time'\]"),
        ({"cost": [1.0, "2.0"]}, r"history\['cost'\]\[1\]"),
        ({"cost": [1.0, 2.0], "accuracy": [0.5, None]}, r"history\['accuracy'\]\[1\]"),
        ({"cost": [1.0, 2.0], "accuracy": [True, False]}, r"history\['accuracy'\]\[0\]"),
        ({"cost": [1.0, 2.0], "val_cost": [1.0, 2j]}, r"history\['val_cost'\]\[1\]"),
        ({"cost": "12"}, r"history\['cost'\]"),
        ({"cost": 1.0}, r"history\['cost'\]"),
        ({"cost": np.ones((2, 2))}, r"history\['cost'\]"),
    ],
    ids=[
        "empty",
        "no-cost",
        "zero-epochs",
        "not-a-mapping",
        "short-val_cost",
        "long-val_accuracy",
        "short-lr",
        "long-time",
        "str-value",
        "none-value",
        "bool-value",
        "complex-value",
        "str-series",
        "scalar-series",
        "2d-series",
    ],
)
def test_bad_history_raises_naming_the_key(history, match):
    # Validation comes before matplotlib is needed, so these run without it too.
    with pytest.raises(ValueError, match=match):
        plot.learning_curves(history)


def test_unknown_keys_are_ignored(mpl):
    fig = plot.learning_curves({"cost": COST, "notes": "lr halved at epoch 3"})
    assert len(fig.axes) == 1


@pytest.mark.parametrize(
    "error", [OSError("disk full"), KeyboardInterrupt()], ids=lambda error: type(error).__name__
)
def test_failed_save_leaves_the_old_file_and_no_temp_file(mpl, tmp_path, monkeypatch, error):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = tmp_path / "curves.png"
    path.write_bytes(b"old plot")

    def fail(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(FigureCanvasAgg, "print_png", fail)
    with pytest.raises(type(error)):
        plot.learning_curves({"cost": COST}, path)
    assert path.read_bytes() == b"old plot"
    assert os.listdir(tmp_path) == ["curves.png"]


def test_failed_save_after_partial_write_leaves_no_temp_file(mpl, tmp_path, monkeypatch):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def write_half_then_fail(self, filename_or_obj, *args, **kwargs):
        filename_or_obj.write(PNG_SIGNATURE)
        raise OSError("disk full")

    monkeypatch.setattr(FigureCanvasAgg, "print_png", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        plot.learning_curves({"cost": COST}, tmp_path / "curves.png")
    assert os.listdir(tmp_path) == []


def test_missing_directory_raises_and_creates_nothing(mpl, tmp_path):
    with pytest.raises(FileNotFoundError):
        plot.learning_curves({"cost": COST}, tmp_path / "missing" / "curves.png")
    assert os.listdir(tmp_path) == []


def test_replaces_an_existing_file(mpl, tmp_path):
    path = tmp_path / "curves.png"
    path.write_bytes(b"old plot")
    plot.learning_curves({"cost": COST}, path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert os.listdir(tmp_path) == ["curves.png"]


def test_file_mode_follows_umask_or_the_replaced_file(mpl, tmp_path):
    # A bare temporary file is 0600; the plot must not end up unreadable to others.
    old_umask = os.umask(0o022)
    try:
        plot.learning_curves({"cost": COST}, tmp_path / "new.png")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "new.png").st_mode) == 0o644

    existing = tmp_path / "existing.png"
    existing.write_bytes(b"old plot")
    existing.chmod(0o640)
    plot.learning_curves({"cost": COST}, existing)
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o640


def test_missing_matplotlib_raises_import_error_naming_the_extra(monkeypatch):
    for name in MATPLOTLIB_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"deltaprop\[plot\]"):
        plot.learning_curves({"cost": COST})


def test_module_imports_without_matplotlib(monkeypatch):
    import importlib

    for name in MATPLOTLIB_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    # Re-import from scratch; monkeypatch puts the original module back in both places.
    monkeypatch.delitem(sys.modules, "deltaprop.plot")
    monkeypatch.delattr(dp, "plot")
    module = importlib.import_module("deltaprop.plot")
    assert module.__all__ == ["learning_curves", "learning_speed", "saturation"]


def test_threads_draw_independent_figures(mpl, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    histories = [{"cost": [float(i), float(i) / 2]} for i in range(1, 9)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        figs = list(
            pool.map(
                lambda ih: plot.learning_curves(ih[1], tmp_path / f"{ih[0]}.png"),
                enumerate(histories),
            )
        )
    for fig, history in zip(figs, histories):
        np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), history["cost"])
    assert sorted(os.listdir(tmp_path)) == sorted(f"{i}.png" for i in range(8))
