"""Command line: ``deltaprop train | evaluate | predict | export`` (also ``python -m deltaprop``).

``deltaprop`` alone trains on the digits shipped with the package. Errors are one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from . import _core, datasets, onnx, optim, plot, schedules
from ._checks import check_int, check_real
from ._data import class_indices
from ._data_files import is_data_file, read_inputs, read_labelled
from ._files import private_directory, write_atomically
from ._precision import MATMUL_PRECISIONS
from ._progress import epoch_line
from ._splits import described_split, evaluation_split, trained_on
from ._version import __version__
from .network import ACTIVATIONS, COSTS, INITS, OUTPUTS, Network, load
from .training import DivergenceError

_BROKEN_PIPE = 128 + 13  # as a shell reports a program that SIGPIPE ended
DATA_HELP = (
    "'digits' (shipped), 'fashion-mnist' (installed data), a directory of IDX files, or a "
    "sparse data file: scipy.sparse.save_npz's .npz (with --labels) or svmlight text "
    "(.svm, .svmlight, .libsvm: labels in the first column)"
)
LABELS_HELP = ".npy file of the class indices of a --data .npz file's rows"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, and every option's default in its help."""

    def __init__(self, **kwargs) -> None:
        super().__init__(formatter_class=_DefaultsShown, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"deltaprop: error: {message}\n")


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: ...)" after each option's help, unless the help says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "default" in action.help:
            return action.help
        return super()._get_help_string(action)


class CommandError(Exception):
    """A user error to report in one line."""


def _option(parse, check, what: str):
    """Make an argparse type: ``parse`` the text, then ``check`` the value.

    ``check`` is one of _checks' functions; errors name the option (argparse adds it).
    """

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} value: {text!r}") from None
        try:
            return check(value)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error).split(": ", 1)[-1]) from None

    return convert


_COUNT = _option(int, lambda n: check_int(n, "count", 0), "int")
_POSITIVE = _option(int, lambda n: check_int(n, "count", 1), "int")
_RATE = _option(float, lambda x: check_real(x, "rate", 0.0, low_open=True), "float")
_STRENGTH = _option(float, lambda x: check_real(x, "strength", 0.0), "float")
_FRACTION = _option(float, lambda x: check_real(x, "fraction", 0.0, 1.0), "float")
_REAL = _option(float, lambda x: check_real(x, "number"), "float")
_OPEN_FRACTION = _option(
    float, lambda x: check_real(x, "fraction", 0.0, 1.0, low_open=True), "float"
)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="deltaprop",
        description="Train, evaluate and use multilayer perceptrons (backpropagation on BLAS).",
    )
    parser.add_argument("--version", action="version", version=f"deltaprop {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    train_parser = commands.add_parser("train", help="train a network (the default)")
    for add_options in (_add_model_options, _add_training_options, _add_run_options):
        add_options(train_parser)
    evaluate = commands.add_parser("evaluate", help="accuracy and confusion matrix of a model")
    evaluate.add_argument("model", help="a model file written by 'deltaprop train --save'")
    evaluate.add_argument(
        "--data",
        help=DATA_HELP + "; its test split (default: the data set the model file records it "
        "was trained on, else digits)",
    )
    evaluate.add_argument(
        "--labels", help=LABELS_HELP + " (default: the model file's, with its --data)"
    )
    evaluate.add_argument(
        "--test-fraction",
        type=_OPEN_FRACTION,
        help="test split of the digits (default: the model file's, else 0.2)",
    )
    evaluate.add_argument(
        "--seed", type=_COUNT, help="seed of the digits split (default: the model file's, else 0)"
    )
    predict = commands.add_parser("predict", help="write a model's predictions for an .npy file")
    predict.add_argument("model", help="a model file written by 'deltaprop train --save'")
    predict.add_argument(
        "input",
        help=".npy file of shape (n_samples, n_inputs), or a sparse data file: "
        "scipy.sparse.save_npz's .npz or svmlight text (.svm, .svmlight, .libsvm)",
    )
    predict.add_argument(
        "--output",
        "-o",
        help="output .npy (default: INPUT.predictions.npy, with --classes INPUT.classes.npy)",
    )
    predict.add_argument(
        "--classes", action="store_true", help="write class indices instead of output activations"
    )
    export = commands.add_parser("export", help="write a model as ONNX (needs the onnx extra)")
    export.add_argument("model", help="a model file written by 'deltaprop train --save'")
    export.add_argument("output", help="the ONNX file to write")
    export.add_argument(
        "--opset",
        type=_option(int, lambda n: check_int(n, "opset", onnx.OPSET), "int"),
        default=onnx.OPSET,
        help=f"ONNX opset (default {onnx.OPSET}, the lowest that runs everywhere)",
    )
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """Add the train command's options of the network: its layers, costs and precision."""
    add = parser.add_argument
    add(
        "--hidden",
        type=_POSITIVE,
        nargs="*",
        default=[30],
        metavar="N",
        help="hidden layer sizes (default: 30)",
    )
    add(
        "--activation",
        choices=ACTIVATIONS,
        nargs="+",
        default=["sigmoid"],
        metavar="NAME",
        help=f"hidden-layer activation, one or one per --hidden layer: {', '.join(ACTIVATIONS)} "
        "(default: sigmoid)",
    )
    add(
        "--leaky-slope",
        type=_REAL,
        nargs="+",
        default=[0.01],
        metavar="SLOPE",
        help="slope of leaky_relu for z <= 0, one or one per --hidden layer (default: 0.01)",
    )
    add("--output", choices=OUTPUTS, default="softmax", help="output activation")
    add("--cost", choices=COSTS, default="log_likelihood", help="cost function")
    add("--init", choices=INITS, default="normal_scaled", help="weight initialiser")
    add("--dtype", choices=("float64", "float32"), default="float64", help="precision")
    add(
        "--matmul-precision",
        choices=MATMUL_PRECISIONS,
        default="highest",
        help="precision of the matrix products (default: highest); bfloat16 operands with "
        "float32 sums need --dtype float32 and deltaprop[bf16]",
    )


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """Add the train command's options of the training: optimizer, batches, penalties."""
    add = parser.add_argument
    add("--optimizer", choices=optim.NAMES, default="sgd", help="update rule")
    add(
        "--lr",
        type=_RATE,
        default=None,
        help="learning rate (default: 0.5 for sgd, else the optimizer's own)",
    )
    add("--momentum", type=_FRACTION, default=None, help="for momentum and nesterov (default 0.9)")
    add("--batch-size", type=_POSITIVE, default=10, help="rows per mini-batch")
    add("--epochs", type=_COUNT, default=30, help="passes over the training data")
    add("--lmbda", type=_STRENGTH, default=0.0, help="L2 regularisation lambda (Nielsen's form)")
    add("--l1", type=_STRENGTH, default=0.0, help="L1 regularisation")
    add("--dropout", type=_FRACTION, default=0.0, help="dropout rate of the hidden layers")
    add(
        "--standardize",
        action="store_true",
        help="scale each input to mean 0 and std 1 on the training split; the model file "
        "keeps the scaling, which predict, evaluate and export apply",
    )
    add(
        "--schedule",
        choices=("constant", "step", "adaptive"),
        default="constant",
        help="learning-rate schedule",
    )
    add(
        "--early-stopping",
        action="store_true",
        help="stop when the validation cost stops falling; keep the best epoch's weights",
    )
    add("--patience", type=_POSITIVE, default=5, help="epochs without improvement to stop after")
    add(
        "--class-weight",
        choices=("balanced",),
        default=None,
        help="weigh each class n_samples / (n_classes * its count) in the training cost "
        "(default: every sample weighs 1)",
    )
    add("--seed", type=_COUNT, default=0, help="seed of the weights, row orders and splits")
    add(
        "--diagnostics",
        action="store_true",
        help="measure how each layer learns: a line per epoch of its speed of learning "
        "||dC/db||, update ratio ||dW||/||W||, saturated and dead fractions; with --plot, "
        "also STEM-learning-speed.png and STEM-saturation.png",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add the train command's options of the data, the outputs and the processes."""
    add = parser.add_argument
    add("--data", default="digits", help=DATA_HELP)
    add("--labels", help=LABELS_HELP)
    add(
        "--validation-fraction",
        type=_FRACTION,
        default=0.0,
        help="hold out this fraction of the training data for validation",
    )
    add(
        "--test-fraction",
        type=_OPEN_FRACTION,
        default=0.2,
        help="test split of the digits or of a data file",
    )
    add(
        "--threads",
        type=_POSITIVE,
        default=None,
        help="threads of the core (default: one per core, or the cores shared among the "
        "ranks of a machine with --distributed)",
    )
    add("--save", metavar="MODEL", help="write the trained model to this file (default: none)")
    add(
        "--plot",
        metavar="PNG",
        help="write learning curves to this PNG (needs matplotlib; default: none)",
    )
    add("--quiet", action="store_true", help="no per-epoch progress")
    add(
        "--distributed",
        action="store_true",
        help="data-parallel training over MPI: run as 'mpiexec -n RANKS deltaprop train "
        "--distributed ...' (needs deltaprop[mpi]); rank 0 prints and writes the files",
    )


def _load_data(split: dict, dtype: str):
    """((X_train, y_train), (X_test, y_test)) of a split: its data, labels, test_fraction, seed.

    The split's data is a --data value, its labels those of --labels.
    """
    source, labels = split["data"], split["labels"]
    test_fraction, seed = split["test_fraction"], split["seed"]
    if labels is not None and not is_data_file(source):
        raise CommandError(f"--labels: only for a --data .npz file, not {source!r}")
    if is_data_file(source):
        X, y = read_labelled(source, labels, dtype)
        return datasets.train_test_split(X, y, test_fraction=test_fraction, seed=seed)
    if source == "digits":
        X, y = datasets.load_digits(dtype=dtype)
        return datasets.train_test_split(X, y, test_fraction=test_fraction, seed=seed)
    if source == "fashion-mnist":
        try:
            return datasets.load_fashion_mnist(dtype=dtype)
        except FileNotFoundError:
            raise CommandError(
                "--data fashion-mnist: Fashion-MNIST is not installed: apt-get install "
                f"dataset-fashion-mnist (Debian), set {datasets.FASHION_MNIST_ENV} to the "
                "directory of its IDX files, or give that directory as --data"
            ) from None
    if os.path.isdir(source):
        try:
            return datasets.load_fashion_mnist(directory=source, dtype=dtype)
        except FileNotFoundError:
            raise CommandError(
                f"--data: {source} does not hold Fashion-MNIST's four IDX files "
                "(train- and t10k- images and labels, plain or .gz)"
            ) from None
    raise CommandError(f"--data: expected {DATA_HELP}, got {source!r}")


def train(args: argparse.Namespace) -> Network:
    """Run ``deltaprop train``: build a network, train it, report its test accuracy.

    Prints the network and the data sizes, a line per epoch (unless ``--quiet``) and the
    test accuracy; writes the model (``--save``), recording the data set and split it was
    trained on (its ``trained_on``, which ``deltaprop evaluate`` uses), and the learning
    curves (``--plot``). Without ``--validation-fraction`` or ``--early-stopping``, no
    validation split is held out: the test split is measured after each epoch, and the
    epoch lines and the curves call it the test split (``test_cost``, ``test_accuracy``),
    not validation.

    Parameters
    ----------
    args : argparse.Namespace
        The options of ``deltaprop train``, as parsed.

    Returns
    -------
    Network
        The trained network.

    Raises
    ------
    CommandError
        An unknown ``--data``.
    ValueError, TypeError, OSError, ImportError
        Invalid options, missing or invalid data, a file that cannot be written, or
        ``--plot`` without matplotlib.
    DivergenceError
        Training diverged.
    """
    if args.matmul_precision == "bfloat16" and args.dtype != "float32":
        raise CommandError("--matmul-precision bfloat16 needs --dtype float32")
    activation = _per_hidden_layer(args.activation, args.hidden, "--activation")
    leaky_slope = _per_hidden_layer(args.leaky_slope, args.hidden, "--leaky-slope")
    comm = _world() if args.distributed else None
    if args.threads is not None:
        _core.set_num_threads(args.threads)
    say = print if comm is None or comm.Get_rank() == 0 else _silent
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path:
            _check_destination(option, path)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CommandError("--plot needs matplotlib: pip install 'deltaprop[plot]'")
    (X_train, y_train), (X_test, y_test) = _load_data(vars(args), args.dtype)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    sizes = [X_train.shape[1], *args.hidden, n_classes]
    net = Network(
        sizes,
        activation=activation,
        output=args.output,
        cost=args.cost,
        dtype=args.dtype,
        init=args.init,
        seed=args.seed,
        leaky_slope=leaky_slope,
    )
    net.trained_on = trained_on(args)
    try:
        net.matmul_precision = args.matmul_precision
    except ImportError as error:
        raise CommandError(f"--matmul-precision: {error}") from None
    lr = 0.5 if args.lr is None and args.optimizer == "sgd" else args.lr
    test_per_epoch = not (args.validation_fraction or args.early_stopping)
    lines = _test_split_lines(args.epochs, say) if test_per_epoch and not args.quiet else ()
    if args.diagnostics and not args.quiet:
        lines = (*lines, _diagnostics_lines(say))
    counts = f"{X_train.shape[0]} training and {X_test.shape[0]} test samples"
    say(f"{net}: {counts}, optimizer", args.optimizer)
    start = time.perf_counter()
    history = net.fit(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=lr,
        momentum=args.momentum,
        lmbda=args.lmbda,
        l1=args.l1,
        dropout=args.dropout,
        standardize=args.standardize,
        schedule=schedules.get(args.schedule),
        validation_fraction=args.validation_fraction,
        early_stopping=args.early_stopping,
        patience=args.patience,
        class_weight=args.class_weight,
        diagnostics=args.diagnostics,
        seed=args.seed,
        # Measured on the test split, the epoch's validation metrics are named for it.
        verbose=not (args.quiet or test_per_epoch),
        callbacks=lines,
        validation_data=(X_test, y_test) if test_per_epoch else None,
        comm=comm,
    )
    say(
        f"test accuracy {net.evaluate(X_test, y_test):.4f} after {len(history['cost'])} "
        f"epochs ({time.perf_counter() - start:.2f} s)"
    )
    if comm is not None and comm.Get_rank() != 0:
        return net  # every rank holds the same network: rank 0 writes the files
    if args.save:
        _save_keeping_the_model(net, args.save)
    if args.plot:
        _plot(history, args.plot, repr(net), test_per_epoch)
        print(f"learning curves written to {args.plot}")
        if args.diagnostics:
            _plot_diagnostics(history, args.plot, repr(net))
    return net


def _test_split_lines(epochs: int, say):
    """Make a callback printing each epoch's line, the test split's metrics named test_*."""
    names = {"val_cost": "test_cost", "val_accuracy": "test_accuracy"}

    def report(epoch: int, metrics: dict) -> bool:
        say(epoch_line(epoch, epochs, metrics, names), flush=True)
        return False

    return (report,)


def _plot(history: dict, path: str, title: str, test_per_epoch: bool) -> None:
    """Write the learning curves; the second curve is the test split's if it was measured."""
    figure = plot.learning_curves(history, None, title=title)
    if test_per_epoch:
        for axes in figure.axes:
            for line in axes.get_lines():
                if line.get_label() == "validation":
                    line.set_label("test split")
            legend = axes.get_legend()
            for text in legend.get_texts() if legend is not None else ():
                if text.get_text() == "validation":
                    text.set_text("test split")
    write_atomically(path, lambda file: figure.savefig(file, format="png"))


def _diagnostics_lines(say):
    """Make a callback printing each epoch's diagnostics, one value per layer ("-": none)."""
    shown = (("learning_speed", "speed", ".2e"), ("update_ratio", "update", ".2e"),
             ("saturated", "saturated", ".3f"), ("dead", "dead", ".3f"))  # fmt: skip

    def report(epoch: int, metrics: dict) -> bool:
        parts = []
        for key, name, form in shown:
            values = metrics[key]
            if any(value is not None for value in values):
                text = " ".join("-" if value is None else format(value, form) for value in values)
                parts.append(f"{name} {text}")
        say("  layers 1.." + str(len(metrics["learning_speed"])) + ": " + "  ".join(parts))
        return False

    return report


def _plot_diagnostics(history: dict, path: str, title: str) -> None:
    """Write STEM-learning-speed.png and, when a layer has one, STEM-saturation.png."""
    stem = path[: -len(".png")] if path.lower().endswith(".png") else path
    drawings = [("learning-speed", plot.learning_speed)]
    activity = [value for key in ("saturated", "dead") for epoch in history[key] for value in epoch]
    if any(value is not None for value in activity):
        drawings.append(("saturation", plot.saturation))
    for name, draw in drawings:
        ax = draw(history)
        ax.set_title(title, fontsize="small")
        target = f"{stem}-{name}.png"
        write_atomically(target, lambda file, figure=ax.figure: figure.savefig(file, format="png"))
        print(f"{name.replace('-', ' ')} written to {target}")


def _world():
    """MPI's world communicator for ``--distributed``, with its ranks' BLAS threads set.

    The ranks on one machine share its cores (MPI busy-polls: more threads than cores
    would slow every rank down).
    """
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise CommandError("--distributed needs mpi4py: pip install 'deltaprop[mpi]'") from error
    comm = MPI.COMM_WORLD
    ranks_here = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
    _core.set_num_threads(max(1, len(os.sched_getaffinity(0)) // ranks_here))
    return comm


def _silent(*args, **kwargs) -> None:
    """Print nothing: ranks other than 0 of ``--distributed``."""


def _per_hidden_layer(values: list, hidden: list[int], option: str) -> Any:
    """One value of a per-layer option for every hidden layer, or the list of one each."""
    if len(values) == 1:
        return values[0]
    if len(values) != len(hidden):
        raise CommandError(
            f"{option}: expected one value or one per --hidden layer ({len(hidden)}), "
            f"got {len(values)}"
        )
    return values


def _check_destination(option: str, path: str) -> None:
    """Check before training that the file an option names can be written.

    Its directory exists and is writable, and it is not a directory or special file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"{option}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CommandError(f"{option}: directory {directory} is not writable")
    if os.path.exists(path) and not os.path.isfile(path):
        raise CommandError(f"{option}: {path} exists and is not a regular file")


def _save_keeping_the_model(net: Network, path: str) -> None:
    """Save the trained model; should that fail, keep it in the temporary directory.

    The destination was checked before training; if writing fails anyway, the model goes to
    a new directory of the temporary directory that only this user can enter (nothing
    another user planted there is written through) and the error says where, rather than
    lose the training.
    """
    try:
        net.save(path)
    except OSError as error:
        try:
            fallback = os.path.join(private_directory(), os.path.basename(path) or "model.npz")
            net.save(fallback)
        except OSError as also:
            message = f"--save: {error}; the trained model could not be kept either: {also}"
            raise CommandError(message) from None
        message = f"--save: {error}; the trained model was saved to {fallback}"
        raise CommandError(message) from None
    print(f"model written to {path}")


def evaluate(args: argparse.Namespace) -> None:
    """Run ``deltaprop evaluate``: print a model's accuracy and confusion matrix.

    Parameters
    ----------
    args : argparse.Namespace
        The options of ``deltaprop evaluate``, as parsed: the model file and the data,
        whose test split is evaluated.

    Raises
    ------
    CommandError
        An unknown ``--data``.
    ValueError, OSError
        An invalid model file (`ModelFormatError`), missing or invalid data, or data that
        do not fit the model.
    """
    net = load(args.model)
    split, source = evaluation_split(args, net.trained_on)
    try:
        _, (X_test, y_test) = _load_data(split, net.dtype.name)
    except CommandError as error:
        if args.data is not None:
            raise
        raise CommandError(
            f"{error}; it is the data set {args.model} records the model was trained on: "
            "give --data to evaluate on another"
        ) from None
    # The labels must be classes of the model (a ValueError naming the out-of-range label
    # otherwise), before they index the confusion matrix.
    y_test = class_indices(y_test, len(y_test), net.sizes[-1], f"--data {args.data}: labels")
    predicted = net.predict_classes(X_test)
    n_classes = max(net.sizes[-1], 2)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y_test, predicted), 1)
    print(
        f"{net}: accuracy {np.mean(predicted == y_test):.4f} on {len(y_test)} samples of "
        f"{described_split(split)} ({source})"
    )
    print("confusion matrix (rows: true class, columns: predicted class)")
    width = max(5, len(str(confusion.max())) + 1)
    print("     " + "".join(f"{j:>{width}}" for j in range(n_classes)))
    for i, row in enumerate(confusion):
        print(f"{i:>5}" + "".join(f"{count:>{width}}" for count in row))


def predict(args: argparse.Namespace) -> None:
    """Run ``deltaprop predict``: write a model's predictions for an ``.npy`` or sparse file.

    The output activations go to ``--output``, else ``INPUT.predictions.npy``; the class
    indices (``--classes``) to ``--output``, else ``INPUT.classes.npy``, so that they never
    replace the activations. The file is written atomically, its destination checked
    before the model is loaded.

    Parameters
    ----------
    args : argparse.Namespace
        The options of ``deltaprop predict``, as parsed.

    Raises
    ------
    ValueError, TypeError, OSError
        An invalid model file, inputs that do not fit the model, or a file that cannot
        be read or written.
    """
    suffix = ".classes.npy" if args.classes else ".predictions.npy"
    path = args.output or os.path.splitext(args.input)[0] + suffix
    _check_destination("--output", path)
    net = load(args.model)
    X = read_inputs(args.input, net.sizes[0], net.dtype)
    result = net.predict_classes(X) if args.classes else net.predict(X)
    write_atomically(path, lambda file: np.save(file, result, allow_pickle=False))
    print(f"{len(result)} predictions written to {path}")


def export(args: argparse.Namespace) -> None:
    """Run ``deltaprop export``: write a model file as an ONNX model, atomically.

    Parameters
    ----------
    args : argparse.Namespace
        The options of ``deltaprop export``, as parsed: the model, the output and the opset.

    Raises
    ------
    ImportError
        The ``onnx`` package is not installed.
    ValueError, OSError
        An invalid model file, an opset the ``onnx`` package does not know, or a file that
        cannot be written.
    """
    net = load(args.model)
    net.to_onnx(args.output, opset=args.opset)
    print(f"{net} written to {args.output} (ONNX opset {args.opset})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: ``deltaprop [train | evaluate | predict | export] ...``.

    Without a command (no arguments, or options first), ``train`` is meant. Output that
    cannot be written (a full disk, a closed pipe) never stops a command: training goes
    on and the model is saved, then the failure decides the exit status.

    Parameters
    ----------
    argv : sequence of str or None, default=None
        The arguments, without the program name; None: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success (``--help`` included), 2 for a usage error or a
        command's error (reported in one line on stderr; standard output failing is
        one), 130 on Ctrl-C, 141 (128 + SIGPIPE, quietly, as other programs end) when
        standard output is a pipe that was closed.
    """
    with _Guarded("stdout") as out, _Guarded("stderr") as err:
        status = _main(argv)
        out.flush()
        if out.error is not None and status == 0:
            if out.error.errno == errno.EPIPE:
                status = _BROKEN_PIPE
            else:
                _error(f"standard output: {out.error.strerror or out.error}")
                status = 2
        err.flush()
    return status


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "train")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already reported in one line
        return int(done.code or 0)
    command = {"train": train, "evaluate": evaluate, "predict": predict, "export": export}[
        args.command
    ]
    status = _run(command, args)
    mpi = sys.modules.get("mpi4py.MPI")
    if status == 2 and getattr(args, "distributed", False) and mpi is not None:
        # An error of one rank alone would leave the others waiting for it: end them all.
        mpi.COMM_WORLD.Abort(status)
    return status


def _run(command, args: argparse.Namespace) -> int:
    """Run a command; return its exit status, with an error reported in one line on stderr."""
    try:
        command(args)
    except DivergenceError as error:
        _error(f"{error}; lower --lr (or --momentum)")
        return 2
    except MemoryError:
        _error("out of memory: use smaller --hidden layers or data")
        return 2
    except (CommandError, ValueError, TypeError, OSError, ImportError, RuntimeError) as error:
        _error(str(error))
        return 2
    except KeyboardInterrupt:
        _to_stderr("deltaprop: interrupted")
        return 130
    return 0


def _error(message: str) -> None:
    """Report an error in one line on stderr."""
    _to_stderr(f"deltaprop: error: {message}")


def _to_stderr(line: str) -> None:
    """Print a line on stderr; nowhere if it was closed (print would take stdout then)."""
    if sys.stderr is not None:
        print(line, file=sys.stderr)


class _Guarded:
    """``sys.stdout`` or ``sys.stderr`` replaced by a stream that remembers its failure.

    Progress lines are written from inside `Network.fit`: a full disk or a closed pipe
    there must cost neither the training nor the save. The first failure is kept in
    ``error`` and what is written after it is dropped; on leaving, the stream is put back
    and its file descriptor pointed at the null device, so that the interpreter's last
    flush of what is still buffered fails neither (it would print a traceback and exit
    with status 120).
    """

    def __init__(self, name: str) -> None:
        self.name, self.error = name, None
        self.stream = getattr(sys, name)

    def __enter__(self) -> _Guarded:
        if self.stream is not None:  # None: the descriptor was closed when Python started
            setattr(sys, self.name, self)
        return self

    def __exit__(self, *exc_info) -> None:
        if getattr(sys, self.name) is self:
            setattr(sys, self.name, self.stream)
        if self.error is not None:
            _point_at_null_device(self.stream)

    def write(self, text: str) -> int:
        """Write ``text``, unless an earlier write or flush failed; never raise OSError."""
        if self.error is None:
            try:
                self.stream.write(text)
            except OSError as error:
                self.error = error
        return len(text)

    def flush(self) -> None:
        """Flush the stream, unless an earlier write or flush failed; never raise OSError."""
        if self.error is None and self.stream is not None:
            try:
                self.stream.flush()
            except OSError as error:
                self.error = error

    def __getattr__(self, name: str):
        return getattr(self.stream, name)  # isatty, fileno, encoding...


def _point_at_null_device(stream) -> None:
    """Send what ``stream`` still holds, and anything written later, to the null device."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file (a test's capture): nothing will flush it at exit
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
