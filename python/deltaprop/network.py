"""The `Network` class: architecture, parameters and the computations on them.

This module is the only caller of the compiled core.

Parameters live in one flat array, layer after layer: W^l (row-major, shape
(n_l, n_{l-1})) then b^l (shape (n_l,)), for l = 1..L. `Network.weights` and
`Network.biases` are views into it. Inputs are checked and converted (dtype, C order,
alignment) once per call here; the core then takes them as they are. Training runs
(`Network.fit`) are organised by `deltaprop.training`; model files by `deltaprop.io`.
`deltaprop.onnx` and `deltaprop.interop` are imported by the methods that use them, on
first use: few programs do, and `import deltaprop` would take about 3 ms longer.
"""

from __future__ import annotations

import _thread  # threading's locks, without threading's cost to `import deltaprop`
import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core, _data, _files, _minibatch, _precision, _scaling, io, optim, training
from ._architecture import ACTIVATIONS, COSTS, INITS, OUTPUTS, Architecture
from ._checks import as_real_array, check_int, check_name, check_real
from ._container import ModelFormatError
from ._forksafe import GATE

if TYPE_CHECKING:
    from .interop import Layers

__all__ = ["ACTIVATIONS", "COSTS", "INITS", "OUTPUTS", "Network", "load", "save"]

_CORE_CLASSES = {np.dtype(np.float32): _core.Mlp32, np.dtype(np.float64): _core.Mlp64}


class Network:
    """A fully-connected feed-forward network trained by backpropagation.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, input first: ``[n_0, n_1, ..., n_L]``, each >= 1, at least two
        layers.
    activation : {"sigmoid", "tanh", "relu", "leaky_relu", "identity"} or sequence of them, \
default="sigmoid"
        Hidden-layer activation: one name for every hidden layer, or a list with one per
        hidden layer (``len(sizes) - 2`` names; ``["relu", "tanh"]`` for
        ``[64, 30, 20, 10]``). BP2 multiplies by each layer's own sigma'(z^l).
    output : {"sigmoid", "softmax", "identity"}, default="sigmoid"
        Output activation.
    cost : {"quadratic", "cross_entropy", "log_likelihood"}, default="quadratic"
        ``"quadratic"`` (1/2 ||a - y||^2, any output), ``"cross_entropy"`` (per output
        unit, sigmoid output) or ``"log_likelihood"`` (softmax output).
    dtype : {"float64", "float32"}, default="float64"
        Precision of the parameters and of all computation.
    init : {"normal_scaled", "normal", "glorot", "he"}, default="normal_scaled"
        Initialiser: ``"normal_scaled"`` (W ~ N(0, 1/n_in), b ~ N(0, 1); network2.py's
        default), ``"normal"`` (both N(0, 1)), ``"glorot"`` (W ~ U(+-sqrt(6/(n_in+n_out))),
        b = 0) or ``"he"`` (W ~ N(0, 2/n_in), b = 0).
    seed : int or None, default=None
        Seed of the initialiser. Weights are drawn in float64 and then rounded, so float32
        and float64 networks with the same seed start from the same point.
    leaky_slope : float or sequence of float, default=0.01
        Slope of ``"leaky_relu"`` for z <= 0: one for every hidden layer, or one per hidden
        layer.
    matmul_precision : {"highest", "bfloat16"}, default="highest"
        Precision of the matrix products (see the attribute).

    Attributes
    ----------
    architecture : Architecture
        Layer sizes, activations, cost, dtype and ``leaky_slope``.
    activations : tuple of str
        The activation of each hidden layer, l = 1..L-1.
    leaky_slopes : tuple of float
        The ``"leaky_relu"`` slope of each hidden layer, l = 1..L-1.
    dtype : numpy.dtype
        float32 or float64.
    matmul_precision : {"highest", "bfloat16"}
        ``"highest"``: every product in the network's dtype. ``"bfloat16"`` (float32 networks,
        ``pip install "deltaprop[bf16]"``): the products of the forward pass, BP2 and BP4
        take bfloat16 operands (activations, δ and a bfloat16 copy of W made at each
        forward pass) and accumulate in float32, as PyTorch's autocast does; parameters,
        optimizer state, biases, costs and element-wise passes stay float32. It may be
        changed between calls (train in bfloat16, predict in float32), is saved in model
        files and applies to `fit`, `predict`, `cost`, `gradients` and `objective`. Where
        the CPU has no native bfloat16 (`deltaprop.bfloat16_native`), the same numbers come
        from a fallback, with one `Bfloat16FallbackWarning`.
    optimizer : deltaprop.optim.Optimizer or None
        The optimizer of the last training run, with its state; `fit` continues with it
        when given ``optimizer=None``. None before any training.
    history : dict of str to list of float
        The metrics of the last `fit`, epoch by epoch (see `fit`).
    trained_on : dict or None
        What the network was trained on, saved with it and loaded back: the ``deltaprop``
        command records its data set and split there (``data``, ``test_fraction``,
        ``seed``), which ``deltaprop evaluate`` then uses. Short names to texts, numbers or
        None (at most 16); None: not recorded (the default, and files that do not say).

    Raises
    ------
    TypeError, ValueError
        An argument of the wrong type or value, or a pairing of output and cost that does
        not exist (e.g. ``"log_likelihood"`` without ``"softmax"``).

    Notes
    -----
    The defaults are Nielsen's chapter-1 network (sigmoid output, quadratic cost), kept as
    they were released. For classification, ``output="softmax", cost="log_likelihood"``
    learns faster and further, and is what the ``deltaprop`` command uses.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: str | Sequence[str] = "sigmoid",
        output: str = "sigmoid",
        cost: str = "quadratic",
        dtype: Any = "float64",
        init: str = "normal_scaled",
        seed: int | None = None,
        leaky_slope: float | Sequence[float] = 0.01,
        matmul_precision: str = "highest",
    ) -> None:
        self._build(Architecture(sizes, activation, output, cost, dtype, leaky_slope))
        self.matmul_precision = matmul_precision
        self._initialise(check_name(init, INITS, "init"), np.random.default_rng(seed))

    @classmethod
    def from_params(
        cls,
        weights: Sequence[Any],
        biases: Sequence[Any],
        *,
        activation: str | Sequence[str] = "sigmoid",
        output: str = "sigmoid",
        cost: str = "quadratic",
        dtype: Any = None,
        leaky_slope: float | Sequence[float] = 0.01,
    ) -> Network:
        """Build a network from given parameters (copied).

        Parameters
        ----------
        weights : sequence of array_like, W^l of shape (n_l, n_{l-1})
            One weight matrix per layer, l = 1..L.
        biases : sequence of array_like, b^l of shape (n_l,)
            One bias vector per layer.
        activation : {"sigmoid", "tanh", "relu", "leaky_relu", "identity"} or sequence \
of them, default="sigmoid"
            Hidden-layer activation, one or one per hidden layer, as for `Network`.
        output : {"sigmoid", "softmax", "identity"}, default="sigmoid"
            Output activation, as for `Network`.
        cost : {"quadratic", "cross_entropy", "log_likelihood"}, default="quadratic"
            Cost, as for `Network`.
        dtype : {"float64", "float32"} or None, default=None
            None: float32 if every array is float32, float64 otherwise.
        leaky_slope : float or sequence of float, default=0.01
            Slope of ``"leaky_relu"`` for z <= 0, one or one per hidden layer.

        Returns
        -------
        Network
            With ``optimizer`` None and an empty ``history``.

        Raises
        ------
        TypeError, ValueError
            Shapes that do not chain, non-finite or non-real values, or an invalid
            architecture.
        """
        weights = [as_real_array(W, f"weights[{l}]") for l, W in enumerate(weights)]
        biases = [as_real_array(b, f"biases[{l}]") for l, b in enumerate(biases)]
        sizes = _data.sizes_from_params(weights, biases)
        if dtype is None:
            all_float32 = all(
                p.dtype.kind == "f" and p.dtype.itemsize == 4 for p in weights + biases
            )
            dtype = np.float32 if all_float32 else np.float64
        net = cls.__new__(cls)
        net._build(Architecture(sizes, activation, output, cost, dtype, leaky_slope))
        for l, (W, b) in enumerate(zip(weights, biases)):
            net._weights[l][...] = _data.to_core_layout(W, net.dtype, f"weights[{l}]")
            net._biases[l][...] = _data.to_core_layout(b, net.dtype, f"biases[{l}]")
        return net

    @classmethod
    def from_onnx(
        cls,
        source: str | os.PathLike | bytes | Any,
        *,
        cost: str | None = None,
        dtype: Any = None,
        max_bytes: int | None = None,
    ) -> Network:
        """Build a network from an ONNX model that is a chain of fully connected layers.

        Models written by `to_onnx`, by ``torch.onnx.export`` of an ``nn.Sequential`` of
        ``Linear`` layers and activations, and by skl2onnx for ``MLPClassifier`` and
        ``MLPRegressor`` (their label branch set aside); see `deltaprop.onnx.read` for what
        maps. A model written by `to_onnx` comes back bit for bit, its cost and its input
        scaling (`input_mean`, `input_scale`) included; the scaling other tools write before
        the first layer (skl2onnx's ``StandardScaler``) is read too.

        Parameters
        ----------
        source : str, os.PathLike, bytes or onnx.ModelProto
            An ONNX file, its bytes, or a model in memory.
        cost : {"quadratic", "cross_entropy", "log_likelihood"} or None, default=None
            The cost to train with; None: the one deltaprop's metadata records, else the
            output's usual one (see `deltaprop.interop.default_cost`).
        dtype : {"float64", "float32"} or None, default=None
            None: the model's.
        max_bytes : int or None, default=None
            The most bytes read, file and external data together (None:
            `deltaprop.onnx.MAX_BYTES`, 1 GiB); reading takes about
            `deltaprop.onnx.PEAK_FACTOR` times as much memory at its peak.

        Returns
        -------
        Network
            Ready to `predict` and to `fit` further (no optimizer yet).

        Raises
        ------
        ImportError
            The ``onnx`` package is not installed (``pip install "deltaprop[onnx]"``).
        FileNotFoundError, PermissionError, IsADirectoryError
            The file cannot be opened.
        ModelFormatError
            Not a well-formed ONNX model; `deltaprop.onnx.UnsupportedGraphError` (a
            ModelFormatError) for a graph that is not a chain of fully connected layers,
            naming the first node that cannot be mapped; a model over ``max_bytes``.
        ValueError
            ``cost`` does not go with the model's output activation.
        """
        from . import onnx

        limit = onnx.MAX_BYTES if max_bytes is None else max_bytes
        return cls._from_layers(onnx.read(source, max_bytes=limit), cost, dtype)

    @classmethod
    def from_sklearn(cls, estimator: Any, *, cost: str | None = None, dtype: Any = None) -> Network:
        """Build a network from a fitted scikit-learn ``MLPClassifier`` or ``MLPRegressor``.

        Its predictions are the estimator's ``predict_proba`` (one logistic unit for a binary
        classifier: the probability of ``classes_[1]``) or ``predict`` (as a 2-D array).

        Parameters
        ----------
        estimator : MLPClassifier or MLPRegressor
            Fitted; ``coefs_`` and ``intercepts_`` are copied.
        cost : {"quadratic", "cross_entropy", "log_likelihood"} or None, default=None
            None: the estimator's loss (log-likelihood for softmax outputs, cross-entropy
            for logistic ones, quadratic for a regressor).
        dtype : {"float64", "float32"} or None, default=None
            None: the dtype of ``coefs_``.

        Returns
        -------
        Network
            Ready to `predict` and to `fit` further.

        Raises
        ------
        ImportError
            scikit-learn is not installed.
        TypeError
            ``estimator`` is not an ``MLPClassifier`` or ``MLPRegressor``.
        ValueError
            It is not fitted, uses an option deltaprop does not have (named), or ``cost``
            does not go with its output.
        """
        from . import interop

        return cls._from_layers(interop.sklearn_layers(estimator), cost, dtype)

    @classmethod
    def from_torch(cls, module: Any, *, cost: str | None = None, dtype: Any = None) -> Network:
        """Build a network from a PyTorch ``nn.Sequential`` of ``nn.Linear`` and activations.

        See `deltaprop.interop.torch_layers` for the modules it takes.

        Parameters
        ----------
        module : torch.nn.Sequential
            Its parameters are copied.
        cost : {"quadratic", "cross_entropy", "log_likelihood"} or None, default=None
            None: the output's usual one (log-likelihood for softmax, cross-entropy for
            sigmoid, quadratic for identity).
        dtype : {"float64", "float32"} or None, default=None
            None: the parameters' dtype.

        Returns
        -------
        Network
            Ready to `predict` and to `fit` further.

        Raises
        ------
        ImportError
            PyTorch is not installed.
        TypeError
            ``module`` is not an ``nn.Sequential``.
        ValueError
            A module that cannot be mapped (named by its index and type), or ``cost`` does
            not go with the output.
        """
        from . import interop

        return cls._from_layers(interop.torch_layers(module), cost, dtype)

    @classmethod
    def _from_layers(cls, layers: Layers, cost: str | None, dtype: Any) -> Network:
        if cost is None:
            from . import interop

            cost = layers.cost or interop.default_cost(layers.output)
        net = cls.from_params(
            layers.weights,
            layers.biases,
            activation=layers.activation,
            output=layers.output,
            cost=cost,
            dtype=layers.dtype if dtype is None else dtype,
            leaky_slope=layers.leaky_slope,
        )
        net._input_scaling = layers.input_scaling  # an ONNX graph's, before its first layer
        return net

    def _build(self, architecture: Architecture) -> None:
        self.architecture = architecture
        self.dtype = architecture.dtype
        # The core refuses invalid pairings (e.g. log_likelihood without softmax).
        self._core = _CORE_CLASSES[self.dtype](
            list(architecture.sizes),
            list(architecture.activations),
            architecture.output,
            architecture.cost,
            list(architecture.leaky_slopes),
        )
        self._params = np.zeros(self._core.n_params, dtype=self.dtype)
        self._weights, self._biases = self._layer_views(self._params)
        self.optimizer: optim.Optimizer | None = None
        self.history: dict[str, list[float]] = {}  # of the last fit, epoch by epoch
        # The communicator of the last data-parallel fit (mpi4py): save() writes on its
        # rank 0 only, so that every rank may call it. None: this process alone.
        self.comm: Any = None
        # What the network was trained on (the command line's data set and split), saved
        # with it as the model file's "trained_on" field; None: not recorded.
        self.trained_on: dict[str, Any] | None = None
        self._input_scaling: _scaling.Scaling | None = None  # fit(standardize=True)'s
        self._training = _thread.allocate_lock()  # held by fit: one training run at a time
        # Held while the core updates the parameters, and while they are copied to be
        # saved or pickled: a copy is never half of one batch and half of the next.
        self._params_lock = _thread.allocate_lock()

    # Pickling (copy, multiprocessing, scikit-learn's joblib): the compiled core is rebuilt
    # from the architecture; parameters, optimizer and history travel as they are.
    def __getstate__(self) -> dict[str, Any]:
        record = self._snapshot()
        return {
            "architecture": self.architecture.fields(),
            "params": record.params,
            "optimizer": record.optimizer,
            "history": self.history,
            "trained_on": record.trained_on,
            "matmul_precision": record.matmul_precision,
            "input_scaling": record.input_scaling,
        }

    def _snapshot(self) -> io.ModelRecord:
        """Parameters and optimizer as they are between two batches, copied."""
        with self._params_lock:
            optimizer = None if self.optimizer is None else self.optimizer.copy()
            trained_on = self.trained_on  # a dict copied, anything else refused by save
            trained_on = trained_on.copy() if isinstance(trained_on, dict) else trained_on
            return io.ModelRecord(
                self.architecture,
                self._params.copy(),
                optimizer,
                trained_on=trained_on,
                matmul_precision=self.matmul_precision,
                input_scaling=self._input_scaling,
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._build(Architecture.from_fields(state["architecture"]))
        self._params[...] = state["params"]
        self.optimizer, self.history = state["optimizer"], state["history"]
        self.trained_on = state.get("trained_on")  # absent from older pickles
        self._set_matmul_precision(state.get("matmul_precision", "highest"), asked=False)
        self._input_scaling = state.get("input_scaling")  # absent from older pickles

    def _initialise(self, init: str, rng: np.random.Generator) -> None:
        for W, b in zip(self._weights, self._biases):
            n_out, n_in = W.shape
            if init == "normal_scaled":
                W[...] = rng.normal(0.0, 1.0 / np.sqrt(n_in), size=W.shape)
                b[...] = rng.normal(0.0, 1.0, size=b.shape)
            elif init == "normal":
                W[...] = rng.normal(0.0, 1.0, size=W.shape)
                b[...] = rng.normal(0.0, 1.0, size=b.shape)
            elif init == "glorot":
                limit = np.sqrt(6.0 / (n_in + n_out))
                W[...] = rng.uniform(-limit, limit, size=W.shape)
            else:  # "he"
                W[...] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=W.shape)

    # ------------------------------------------------------------------ description
    @property
    def sizes(self) -> tuple[int, ...]:
        """Units per layer, input first: ``(n_0, n_1, ..., n_L)``."""
        return self.architecture.sizes

    @property
    def activation(self) -> str | tuple[str, ...]:
        """Hidden-layer activation: the name all hidden layers share, else `activations`."""
        return self.architecture.activation

    @property
    def activations(self) -> tuple[str, ...]:
        """The activation of each hidden layer, l = 1..L-1."""
        return self.architecture.activations

    @property
    def output(self) -> str:
        """Output activation."""
        return self.architecture.output

    @property
    def cost_name(self) -> str:
        """Name of the cost."""
        return self.architecture.cost

    @property
    def leaky_slope(self) -> float | tuple[float, ...]:
        """Slope of ``"leaky_relu"`` for z <= 0: one value when all agree, else `leaky_slopes`."""
        return self.architecture.leaky_slope

    @property
    def leaky_slopes(self) -> tuple[float, ...]:
        """The ``"leaky_relu"`` slope of each hidden layer, l = 1..L-1."""
        return self.architecture.leaky_slopes

    @property
    def matmul_precision(self) -> str:
        """Precision of the matrix products: ``"highest"`` or ``"bfloat16"`` (see the class)."""
        return self._core.matmul_precision

    @matmul_precision.setter
    def matmul_precision(self, value: str) -> None:
        self._set_matmul_precision(value, asked=True)

    def _set_matmul_precision(self, value: object, *, asked: bool) -> None:
        precision = _precision.check_matmul_precision(value)
        if precision == "bfloat16" and self.dtype != np.float32:
            raise ValueError(
                "matmul_precision: 'bfloat16' needs a float32 network, this one is "
                f"{self.dtype.name} (create it with dtype='float32')"
            )
        _precision.prepare(precision, asked=asked)
        # The core takes the network's lock: a fit in another thread finishes its batch.
        self._core.matmul_precision = precision

    @property
    def input_mean(self) -> np.ndarray | None:
        """What is subtracted from each input column before the first layer (read-only).

        Learned by ``fit(standardize=True)`` (zeros when learned from sparse inputs), then
        applied to X by every computation (`predict`, `evaluate`, `cost`, `gradients`,
        `objective`, `forward`, `deltas`, later fits) and kept in model files, pickles,
        checkpoints and ONNX exports. None: the inputs are used as given.
        """
        return None if self._input_scaling is None else self._input_scaling.mean

    @property
    def input_scale(self) -> np.ndarray | None:
        """What each input column is divided by, after `input_mean` (read-only; None: none)."""
        return None if self._input_scaling is None else self._input_scaling.scale

    @property
    def weights(self) -> list[np.ndarray]:
        """W^l of shape (n_l, n_{l-1}), l = 1..L: live views.

        Writing into them changes the network; the list itself is a new one at each access.
        """
        return list(self._weights)

    @property
    def biases(self) -> list[np.ndarray]:
        """b^l of shape (n_l,), l = 1..L: live views (see `weights`)."""
        return list(self._biases)

    @property
    def params(self) -> np.ndarray:
        """All parameters as one flat live view: W^1, b^1, W^2, b^2, ..."""
        return self._params

    def __repr__(self) -> str:
        return str(self.architecture)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, *, format: str = "deltaprop") -> None:
        """Save the network, its optimizer and that optimizer's state to one file.

        The file is written atomically (to a temporary file renamed over ``path``);
        `deltaprop.load` reads it back and training resumes from it. The training history
        is not saved. After data-parallel training (``fit(comm=...)``), every rank holds
        the same network, and only rank 0 writes: every rank may call ``save``, and a
        call on rank 0 alone works too.

        Parameters
        ----------
        path : str, bytes or os.PathLike
            Destination file (``.npz`` by convention).
        format : {"deltaprop", "nielsen"}, default="deltaprop"
            ``"nielsen"``: the JSON of network2.py's ``save`` (`deltaprop.nielsen`; sigmoid
            layers and the quadratic or cross-entropy cost only, no optimizer), which
            network2.py's ``load`` and `deltaprop.load` read.

        Raises
        ------
        TypeError
            ``path`` is not a path.
        ValueError
            The network cannot be saved: non-finite values, or an optimizer that is not
            one of the built-in ones or whose state does not fit the network; with
            ``format="nielsen"``, a network that network2.py cannot hold.
        RuntimeError
            ``comm`` has been freed since the fit that set it.
        OSError
            The file cannot be written.
        """
        check_name(format, ("deltaprop", "nielsen"), "format")
        if self.comm is not None and self._comm_rank() != 0:
            return
        if format == "nielsen":
            from . import nielsen

            nielsen.write(path, self)
            return
        io.write(path, self._snapshot())

    def _comm_rank(self) -> int:
        """Return this process's rank in ``comm``, which must still be usable."""
        try:
            return self.comm.Get_rank()
        except RuntimeError as error:  # mpi4py's MPI.Exception: a freed communicator
            raise RuntimeError(
                "save: net.comm, the communicator of the last data-parallel fit, has been "
                "freed (MPI cannot tell this process's rank in it); set net.comm = None to "
                "save from this process, or to a live communicator whose rank 0 writes"
            ) from error

    # 9 is deltaprop.onnx.OPSET, spelled out: that module loads on first use (tests/test_layout.py
    # checks that the two agree).
    def to_onnx(self, path: str | os.PathLike, *, opset: int = 9) -> None:
        """Write the network as an ONNX model, atomically (``pip install "deltaprop[onnx]"``).

        Input ``X`` of shape (N, n_0) with N symbolic, output ``output`` of shape (N, n_L):
        what `predict` returns, in the network's dtype. The parameters are copied between
        two batches, as `save` copies them. See `deltaprop.onnx` for the graph.

        Parameters
        ----------
        path : str or os.PathLike
            Destination file (``.onnx`` by convention).
        opset : int, default=deltaprop.onnx.OPSET
            ONNX opset, from `deltaprop.onnx.OPSET` to the newest the ``onnx`` package knows.

        Raises
        ------
        ImportError
            The ``onnx`` package is not installed.
        TypeError, ValueError
            An invalid ``opset``.
        OSError
            The file cannot be written.
        """
        from . import onnx

        weights, biases = self.layer_copies()
        scaling = self._input_scaling
        model = onnx.network_model(self.architecture, weights, biases, opset=opset, scaling=scaling)
        onnx.write(path, model)

    def layer_copies(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Copy the parameters, between two batches as `save` does, as W^l and b^l.

        Returns
        -------
        weights : list of ndarray, W^l of shape (n_l, n_{l-1})
            Views into one new flat array.
        biases : list of ndarray, b^l of shape (n_l,)
            Views into the same array.
        """
        return self._layer_views(self._snapshot().params)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Network:
        """Load a network saved by `save`, with its optimizer and state.

        Nothing in the file is executed, and no array is allocated before the header and
        the member sizes have been checked.

        Parameters
        ----------
        path : str or os.PathLike
            A model file, a training checkpoint, or the JSON of network2.py's ``save``
            (`deltaprop.nielsen`).

        Returns
        -------
        Network
            Same architecture, dtype and parameters; ``optimizer`` is the saved optimizer
            (same hyper-parameters, state and step) or None if there was none.

        Raises
        ------
        FileNotFoundError, PermissionError, IsADirectoryError
            The file cannot be opened (these are not format errors).
        ModelFormatError
            The file is not a valid deltaprop model file (see its message).
        """
        return _read_network(cls, path)

    # ------------------------------------------------------------------ inputs
    def validate(
        self, X: Any, Y: Any, x_name: str = "X", y_name: str = "Y"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Check a data set and convert it to the layout the core computes on.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs, at least one sample.
        Y : array_like of shape (n_samples,) or (n_samples, n_L)
            Class indices, or targets; with a single output unit a 1-D Y holds targets.
        x_name : str, default="X"
            The name errors give ``X``.
        y_name : str, default="Y"
            The name errors give ``Y``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_0)
            C-contiguous, of the network's dtype (``X`` itself when it already is); not
            scaled: the methods that compute apply `input_mean` and `input_scale`.
        Y : ndarray of shape (n_samples, n_L)
            Targets: one-hot rows for class indices.

        Raises
        ------
        TypeError, ValueError
            Wrong shapes, non-real dtypes, NaN or infinity, class indices out of range,
            targets outside [0, 1] for a cost that takes their logarithm.
        """
        X = _data.inputs(X, self.architecture, x_name)
        return X, _data.targets(Y, X.shape[0], self.architecture, y_name)

    # ------------------------------------------------------------------ computation
    def predict(self, X: Any) -> np.ndarray:
        """Output activations a^L.

        Parameters
        ----------
        X : array_like or scipy.sparse CSR/CSC matrix of shape (n_samples, n_0)
            Converted once to the network's dtype and C order if it is not already.

        Returns
        -------
        ndarray of shape (n_samples, n_L)
            a^L of each sample, of the network's dtype.

        Raises
        ------
        TypeError, ValueError
            A wrong shape or dtype, NaN or infinity in X, or a forward pass that overflows.
        """
        X = _scaling.inputs(self, X, check_finite=False)  # the core checks z
        out = np.empty((X.shape[0], self.architecture.sizes[-1]), dtype=self.dtype)
        try:
            with GATE:
                self._core.predict(self._params, X, out)
        except ValueError:
            # NaN or infinity in X makes every z of the first layer non-finite, which the
            # core reports; only then is X examined, to say which of the two it was.
            _data.require_finite(X, "X")
            raise
        return out

    def forward(self, X: Any, *, return_layers: bool = False):
        """Run the forward pass: a^L, or every layer's z^l and a^l.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs.
        return_layers : bool, default=False
            False: a^L, as `predict`. True: the weighted inputs and activations of every
            layer, from the core's forward pass.

        Returns
        -------
        ndarray of shape (n_samples, n_L), or (zs, activations)
            With ``return_layers``, two lists of L arrays: ``zs[l - 1]`` is z^l = W^l
            a^(l-1) + b^l and ``activations[l - 1]`` is a^l = sigma(z^l), each of shape
            (n_samples, n_l), for l = 1..L (a^0 is X).

        Raises
        ------
        TypeError, ValueError
            A wrong shape or dtype, NaN or infinity in X, or a forward pass that overflows.
        """
        if not return_layers:
            return self.predict(X)
        X = _scaling.inputs(self, X, check_finite=True)
        zs, activations, _ = _layers(self, X, None)
        return zs, activations

    def deltas(self, X: Any, Y: Any) -> list[np.ndarray]:
        """Return every layer's error δ^l = ∂C_x/∂z^l of each sample's cost (BP1, then BP2).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs.
        Y : array_like of shape (n_samples,) or (n_samples, n_L)
            Class indices or targets (see `validate`).

        Returns
        -------
        list of ndarray
            ``deltas[l - 1]`` is δ^l of shape (n_samples, n_l), l = 1..L, per sample (not
            averaged): BP3 and BP4 average δ^l and δ^l (a^(l-1))^T over the rows into
            `gradients`.

        Raises
        ------
        TypeError, ValueError
            Invalid data, or a cost or δ that overflows.
        """
        X, Y = _scaling.validate(self, X, Y)
        return _layers(self, X, Y)[2]

    def predict_classes(self, X: Any) -> np.ndarray:
        """Predict the class of each sample: argmax(a^L), or a^L >= 0.5 with one output unit.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs, as for `predict`.

        Returns
        -------
        ndarray of int64 of shape (n_samples,)
            Class indices, in [0, n_L) (in [0, 2) with one output unit).

        Raises
        ------
        TypeError, ValueError
            As for `predict`.
        """
        return _data.classes_of(self.predict(X))

    def evaluate(self, X: Any, labels: Any) -> float:
        """Compute the fraction of samples whose predicted class is the expected one.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs, at least one sample.
        labels : array_like of shape (n_samples,) or (n_samples, n_L)
            Class indices, or targets whose argmax (or >= 0.5, with one output unit) is
            the class.

        Returns
        -------
        float
            The accuracy, in [0, 1].

        Raises
        ------
        TypeError, ValueError
            Wrong shapes or dtypes, NaN or infinity, class indices out of range, or a
            forward pass that overflows.
        """
        X = _data.inputs(X, self.architecture)
        labels = as_real_array(labels, "labels")
        if labels.ndim == 2:
            targets = _data.targets(labels, X.shape[0], self.architecture, "labels")
            expected = _data.classes_of(targets)
        else:
            expected = _data.class_indices(labels, X.shape[0], self.sizes[-1], "labels")
        return float(np.mean(self.predict_classes(X) == expected))

    def cost(self, X: Any, Y: Any) -> float:
        """Compute the mean cost over the samples (no regularisation term).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs, at least one sample.
        Y : array_like of shape (n_samples,) or (n_samples, n_L)
            Class indices or targets (see `validate`).

        Returns
        -------
        float
            (1/n) sum_x C_x over the n samples.

        Raises
        ------
        TypeError, ValueError
            Invalid data (see `validate`), or a forward pass that overflows.
        """
        X, Y = _scaling.validate(self, X, Y)
        with GATE.call():
            return self._core.cost(self._params, X, Y)

    def gradients(self, X: Any, Y: Any) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
        """Compute the batch-averaged cost and its gradients by backpropagation (BP1-BP4).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs: the batch, at least one sample.
        Y : array_like of shape (n_samples,) or (n_samples, n_L)
            Class indices or targets (see `validate`).

        Returns
        -------
        cost : float
            Mean cost over the batch (no regularisation term).
        dW : list of ndarray, dC/dW^l of shape (n_l, n_{l-1})
            Batch-averaged, l = 1..L; views into one new flat array laid out as `params`.
        db : list of ndarray, dC/db^l of shape (n_l,)
            Batch-averaged, l = 1..L; views into the same array.

        Raises
        ------
        TypeError, ValueError
            Invalid data (see `validate`), or a forward pass that overflows.

        Notes
        -----
        The rows are processed in chunks of bounded workspace (as by `objective`): a batch
        of any size takes a few MB beyond its arrays and the result, during the call and
        after it. Up to a chunk's rows (several thousand for small networks) the result is
        bit for bit the one of a single pass over the batch; above, the chunks' sums are
        added, which may round differently in the last bits.
        """
        X, Y = _scaling.validate(self, X, Y)
        grads = np.empty_like(self._params)
        # The unweighted, unregularised full-batch objective is this batch's gradient,
        # computed in chunks: the core's workspaces grow to the rows of one call and stay,
        # so one pass over a large batch would pin memory for the network's life.
        with GATE.call():
            cost = self._core.objective(self._params, X, Y, None, 0.0, 0.0, grads)
        dW, db = self._layer_views(grads)
        return cost, dW, db

    def gradient_check(
        self,
        X: Any,
        Y: Any,
        *,
        eps: float | None = None,
        lmbda: float = 0.0,
        l1: float = 0.0,
        sample_weight: Any = None,
        entries: int | None = None,
        seed: int | None = 0,
    ):
        """Check the core's gradients against central differences, in float64.

        The first thing to run on a new setup (a new cost, data, regularisation or
        precision): a few rows and a small network, and every relative error should be far
        below 1. The numerical derivatives come from a float64 copy of the network, so a
        float32 network is checked against float64 arithmetic; the analytic ones are the
        network's own (`objective`: its dtype and matmul precision, L2 and L1 included).
        Expect errors near 1e-7 or below in float64, 1e-3 in float32 and 1e-2 with
        ``matmul_precision="bfloat16"``; an error near 1 names a wrong derivative.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs (a few rows: each entry checked costs two passes over them).
        Y : array_like of shape (n_samples,) or (n_samples, n_L)
            Class indices or targets.
        eps : float or None, default=None
            Relative step: ``h = eps * max(1, abs(p))`` for a parameter p; None:
            cbrt(float64's epsilon), about 6e-6.
        lmbda, l1 : float, default=0.0
            L2 and L1 strengths, as in `objective`.
        sample_weight : array_like of shape (n_samples,) or scalar, optional
            As in `objective`.
        entries : int or None, default=None
            Check this many parameters drawn at random; None: all of them.
        seed : int or None, default=0
            Seed of the draw of ``entries``.

        Returns
        -------
        GradientCheck
            The largest relative error per layer for W and b, and the worst entry named
            (see `deltaprop._gradient_check` for the definitions).

        Raises
        ------
        TypeError, ValueError
            Invalid data or arguments.
        """
        from . import _gradient_check

        default_eps = float(np.cbrt(np.finfo(np.float64).eps))
        eps = default_eps if eps is None else check_real(eps, "eps", 0.0, 1.0, low_open=True)
        if entries is not None:
            entries = check_int(entries, "entries", 1)
        return _gradient_check.gradient_check(
            self, X, Y, eps=eps, lmbda=lmbda, l1=l1, sample_weight=sample_weight,
            entries=entries, seed=seed,
        )  # fmt: skip

    def objective(
        self, X: Any, Y: Any, *, sample_weight: Any = None, lmbda: float = 0.0, l1: float = 0.0
    ) -> tuple[float, np.ndarray]:
        """Full-batch objective and its gradient, over all rows in one core call.

        The (sample-weighted) mean cost plus Nielsen's regularisation of the weights (not
        the biases), ``lmbda/(2n) ||W||^2 + l1/n ||W||_1`` with n the number of rows: what
        full-batch optimizers such as L-BFGS minimise. The rows are processed in chunks of
        bounded workspace, with the GIL released; the gradient is the one of averaging
        `gradients` over the rows, in one pass.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs.
        Y : array_like of shape (n_samples,) or (n_samples, n_L)
            Class indices or targets (see `validate`).
        sample_weight : array_like of shape (n_samples,) or scalar, optional
            Non-negative weights with a positive sum: the cost is sum_i w_i C_i / sum_i w_i.
        lmbda, l1 : float, default=0.0
            L2 and L1 strengths, >= 0, in Nielsen's per-sample form.

        Returns
        -------
        cost : float
            The objective.
        gradient : ndarray of shape (n_params,)
            Its gradient, laid out as `params`.

        Raises
        ------
        TypeError, ValueError
            Invalid data or strengths, or a cost or gradient that overflows.
        """
        X, Y = _scaling.validate(self, X, Y)
        n = X.shape[0]
        weights = training.check_sample_weight(sample_weight, n, self.dtype)
        if weights is not None:
            # Only relative weights matter: scaled to at most 1 (as fit does), neither a
            # tiny nor a huge uniform weight underflows or overflows the weighted sums.
            weights /= weights.max()
        l2 = training.l2_coefficient("lmbda", check_real(lmbda, "lmbda", 0.0), n_samples=n)
        l1 = check_real(l1, "l1", 0.0) / n
        gradient = np.empty_like(self._params)
        with GATE.call():
            cost = self._core.objective(self._params, X, Y, weights, l2, l1, gradient)
        return cost, gradient

    def regularisation(
        self, *, lmbda: float = 0.0, l1: float = 0.0, n_samples: int
    ) -> tuple[float, np.ndarray]:
        """Nielsen's regularisation of the weights and its gradient, alone.

        ``lmbda/(2n) ||W||^2 + l1/n ||W||_1`` (the biases are not regularised): the part of
        `objective` that does not depend on the rows. Data-parallel full-batch training
        adds it once to the mean cost over every process's rows.

        Parameters
        ----------
        lmbda, l1 : float, default=0.0
            L2 and L1 strengths, >= 0, in Nielsen's per-sample form.
        n_samples : int
            n, the number of rows of the whole data set, >= 1.

        Returns
        -------
        penalty : float
            The regularisation term.
        gradient : ndarray of shape (n_params,)
            Its gradient, laid out as `params` (zero for the biases).

        Raises
        ------
        TypeError, ValueError
            Invalid strengths or ``n_samples``.
        """
        n = check_int(n_samples, "n_samples", 1)
        l2 = training.l2_coefficient("lmbda", check_real(lmbda, "lmbda", 0.0), n_samples=n)
        l1 = check_real(l1, "l1", 0.0) / n
        gradient = np.zeros_like(self._params)
        with GATE.call():
            penalty = self._core.regularise(self._params, l2, l1, gradient)
        return penalty, gradient

    def _layer_views(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Return views W^l (n_l, n_{l-1}) and b^l (n_l,) of a flat array laid out as params."""
        weights, biases = [], []
        offset = 0
        sizes = self._core.sizes
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            weights.append(flat[offset : offset + n_out * n_in].reshape(n_out, n_in))
            offset += n_out * n_in
            biases.append(flat[offset : offset + n_out])
            offset += n_out
        return weights, biases

    # ------------------------------------------------------------------ training
    fit = training.fit

    def sgd_step(self, X: Any, Y: Any, *, lr: float, lmbda: float = 0.0, n: int | None = None):
        """Make one in-place SGD step on a batch.

        ``w <- (1 - lr*lmbda/n) w - lr dC/dw``, ``b <- b - lr dC/db`` (network2.py's rule),
        with the gradients averaged over the batch. The network's optimizer is neither
        used nor changed.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_0)
            Inputs: the batch, at least one sample.
        Y : array_like of shape (n_samples,) or (n_samples, n_L)
            Class indices or targets (see `validate`).
        lr : float
            Learning rate, > 0.
        lmbda : float, default=0.0
            L2 strength in Nielsen's form.
        n : int or None, default=None
            Training-set size of the L2 term; None: the batch size.

        Returns
        -------
        float
            The batch's mean cost before the step.

        Raises
        ------
        TypeError, ValueError
            Invalid data (see `validate`) or options.
        DivergenceError
            The cost or gradient is not finite; the parameters are left as they were.
        """
        X, Y = _scaling.validate(self, X, Y)
        sgd = optim.SGD(check_real(lr, "lr", 0.0, low_open=True))
        n = X.shape[0] if n is None else check_int(n, "n", 1)
        rule = sgd.rule(check_real(lmbda, "lmbda", 0.0) / n, 0.0)
        settings = _core.TrainSettings(batch_size=X.shape[0], rule=rule)
        with GATE.call(), self._params_lock:
            cost, _, diverged, _ = self._core.train(
                self._params, [], sgd._step, X, Y, None, None, settings
            )
        if diverged >= 0:
            raise training.DivergenceError("sgd_step: the cost or gradient is not finite", batch=0)
        return cost / X.shape[0]

    def train_rows(self, X: np.ndarray, Y: np.ndarray, **options: Any):
        """Train on rows of (X, Y) in mini-batches, in one call of the core.

        Each batch is followed by an update of `optimizer` (which must be set), all in C++.
        `fit` runs its epochs through this; nothing here is checked or converted.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_0)
            In the core's layout, as `validate` returns it (nothing is converted).
        Y : ndarray of shape (n_samples, n_L)
            Targets, as `validate` returns them.
        **options
            Keyword arguments, below.
        rows : ndarray of int64 of shape (n_rows,) or None, default=None
            The rows to visit, in order; None: every row in storage order.
        sample_weight : ndarray of shape (n_samples,) or None, default=None
            Weights of the rows, of the network's dtype; None: every row weighs 1.
        batch_size : int
            Rows per mini-batch; the last may be smaller.
        l2 : float, default=0.0
            L2 coefficient: ``l2 w`` is added to the gradient of the weights.
        l1 : float, default=0.0
            L1 coefficient: ``l1 sign(w)`` is added to the gradient of the weights.
        dropout : float, default=0.0
            Rate of inverted dropout on the hidden layers.
        seed : int, default=0
            Seed of the dropout masks; batch k's mask depends on (seed, first_batch + k)
            alone, so an epoch run in several calls draws the masks of one call.
        first_batch : int, default=0
            Index of the first batch within its epoch.
        shares : ndarray of int64 of shape (3, n_batches) or None, default=None
            Data-parallel training (with ``reduction``): this process's share of each batch,
            positions ``shares[0, k]:shares[1, k]`` of ``rows`` (possibly none), the first
            being row ``shares[2, k]`` of the global batch (dropout masks are drawn per
            row of the global batch). None: this process trains every row.
        reduction : object or None, default=None
            With ``shares``: how the processes sum their arrays, in place (MPI allreduces),
            as `deltaprop._distributed.Group` does. Each batch calls
            ``reduction.reduce_statuses(statuses)`` after the forward pass, on
            ``_core.REDUCTION_TAIL`` entries (cost, sample weight, non-finite counts, stop
            requests: it may add 1 to the last to stop every process after this batch), then
            ``reduction.reduce(values)`` on each bucket of this process's share of the step
            (the new velocity, the new parameters, or the mean gradient, as the optimizer
            takes it): the parameters of layers from the top down, summed as soon as the
            backward pass has written ``reduction.bucket_bytes`` of them (or reached the
            input layer). ``reduction.lead`` is True on exactly one process, which adds
            what every process holds (the decayed weights, mu times the velocity).
            If a reduction raises, the parameters and optimizer state are those at the
            start of the call.

        Returns
        -------
        cost : float
            Mean cost of the batches as they were trained (over every process).
        weight : float
            Total sample weight of the rows trained (their number without weights).
        diverged : int or None
            Index within the epoch (``first_batch`` and on) of the batch that made
            training diverge, whose parameters and optimizer state the network is back to;
            None if none did.

        Raises
        ------
        ValueError
            The network has no optimizer, or its optimizer's state belongs to another
            network.
        """
        return _minibatch.train_rows(self, X, Y, **options)

    def _train_in_core(self, *arguments: Any, **keywords: Any):
        """Run the core's mini-batch training on the parameters (see `_minibatch.train_rows`).

        Binds the optimizer's state to the network first and holds the fork gate and the
        parameters' lock during the call.
        """
        self.optimizer.bind(self._core.n_params, self.dtype)
        with GATE.call(), self._params_lock:
            return self._core.train(
                self._params,
                self.optimizer.state,
                self.optimizer._step,
                *arguments,
                **keywords,
            )

    @contextlib.contextmanager
    def exclusive(self):
        """Hold the network for one training run, as `fit` does for all its epochs.

        Two runs at once would interleave their batches.

        Yields
        ------
        Network
            The network itself.

        Raises
        ------
        RuntimeError
            Another training run holds the network.
        """
        if not self._training.acquire(blocking=False):
            raise RuntimeError("this network is already being trained (in another thread)")
        try:
            yield self
        finally:
            self._training.release()


def save(net: Network, path: str | os.PathLike, *, format: str = "deltaprop") -> None:
    """Save a network with its optimizer state: ``net.save(path)``.

    Parameters
    ----------
    net : Network
        The network to save.
    path : str or os.PathLike
        Destination file (``.npz`` by convention).
    format : {"deltaprop", "nielsen"}, default="deltaprop"
        See `Network.save`.

    Raises
    ------
    TypeError
        ``net`` is not a `Network`.
    ValueError, OSError
        As for `Network.save`.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a Network, got {type(net).__name__}")
    net.save(path, format=format)


def load(path: str | os.PathLike) -> Network:
    """Load a network saved by `save`, with its optimizer and state.

    Parameters
    ----------
    path : str or os.PathLike
        A model file, a training checkpoint or a JSON file of network2.py's ``save``.

    Returns
    -------
    Network
        See `Network.load`.

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        The file cannot be opened.
    ModelFormatError
        The file is not a valid deltaprop model file.
    """
    return Network.load(path)


def _layers(net: Network, X: np.ndarray, Y: np.ndarray | None):
    """z^l, a^l and (with Y) δ^l of every layer from the core, as lists of views."""
    sizes = net.architecture.sizes[1:]
    n = X.shape[0]
    total = n * sum(sizes)
    z, a = np.empty(total, net.dtype), np.empty(total, net.dtype)
    delta = None if Y is None else np.empty(total, net.dtype)
    with GATE:
        net._core.layers(net._params, X, Y, z, a, delta)
    bounds = np.cumsum([0] + [n * size for size in sizes])

    def split(flat):
        return [flat[bounds[l] : bounds[l + 1]].reshape(n, m) for l, m in enumerate(sizes)]

    return split(z), split(a), None if delta is None else split(delta)


def _read_network(cls: type[Network], path: str | os.PathLike) -> Network:
    """Build the network of a model file, a checkpoint or network2.py's JSON (`Network.load`)."""
    if _is_json(path):
        from . import nielsen

        fields = nielsen.read(path)
        return cls.from_params(
            fields["weights"],
            fields["biases"],
            activation="sigmoid",
            output="sigmoid",
            cost=fields["cost"],
            dtype="float64",
        )
    record = io.read(path)
    net = cls.__new__(cls)
    try:
        net._build(record.architecture)
    except (ValueError, TypeError, RuntimeError, OverflowError) as error:
        raise ModelFormatError(
            f"{os.fspath(path)}: the network it describes is invalid: {error}"
        ) from error
    net._params[...] = record.params
    net.optimizer, net.trained_on = record.optimizer, record.trained_on
    net._input_scaling = record.input_scaling
    net._set_matmul_precision(record.matmul_precision, asked=False)
    return net


def _is_json(path: str | os.PathLike) -> bool:
    """Whether a file starts as a JSON object does: network2.py's, not a deltaprop file."""
    with _files.open_regular(path) as file:
        return file.read(64).lstrip(b" \t\r\n")[:1] in (b"{", b"[")
