"""scikit-learn estimators: `DeltapropClassifier` and `DeltapropRegressor`.

They follow `sklearn.neural_network.MLPClassifier` and `MLPRegressor` (same parameter names
where the meaning is the same, the same fitted attributes, ``partial_fit``, ``warm_start``,
early stopping on a held-out validation score) and train a `deltaprop.Network` underneath,
exposed as ``network_``. scikit-learn is an optional dependency::

    pip install 'deltaprop[sklearn]'

How scikit-learn's conventions map onto deltaprop's:

- ``alpha`` is MLP's L2 strength. MLP adds ``alpha * W / B_w`` to each mini-batch's gradient,
  where ``B_w`` is the batch's total sample weight (its size without weights), and adds
  ``0.5 * alpha * ||W||^2 / B_w`` to the batch's loss. Here the gradient gains
  ``(alpha / (B * w_mean)) W``, with ``B`` the batch size and ``w_mean`` the mean training
  weight (1 without weights), given to `Network.fit` as Nielsen's ``lmbda = n * alpha /
  (B * w_mean)`` (it adds ``(lmbda / n) W``, n = training samples). This is MLP's term
  exactly for every full batch without weights, and for full-batch training with weights;
  only the smaller last batch of an epoch (and the weight sum of individual batches) can
  differ. It is a coupled L2 term for every ``optimizer``, "adamw" included, whose own
  decoupled decay (AdamW's default 0.01) comes on top.
- ``loss_curve_`` is, per epoch, the mean training cost of the mini-batches (log-loss for the
  classifier, half the squared error summed over the outputs for the regressor) plus the L2
  penalty ``0.5 * alpha / (B * w_mean) * ||W||^2`` at the end of the epoch: the objective
  the updates minimise, as MLP's curve includes its penalty. (For several regression outputs
  MLP averages the squared error over the outputs in its curve while its gradients sum them;
  here both sum.)
- Training stops once ``n_iter_no_change`` consecutive epochs fail to lower the training loss
  by ``tol`` (with ``early_stopping``: to raise the validation score by ``tol``; MLP waits
  one epoch more). ``max_iter`` epochs without that raise a `ConvergenceWarning`, as MLP does.
- ``warm_start`` and ``partial_fit`` continue the fitted network *and its optimizer state*
  (Adam's moments, the step count) when ``optimizer`` is unchanged; MLP restarts its
  optimizer on each warm-started ``fit``. ``n_iter_`` counts every epoch the network has been
  trained for (the length of ``loss_curve_``), across ``partial_fit`` and warm-started calls.
- The classifier always uses a softmax output over the classes, two units for a binary
  problem (MLP uses one logistic unit), so ``coefs_[-1]`` has one column per class;
  multilabel targets (a 0/1 indicator matrix) get sigmoid outputs with the cross-entropy.
- ``batch_size`` larger than the training set means full-batch training, without MLP's
  warning.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (
        check_classification_targets,
        type_of_target,
        unique_labels,
    )
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as error:  # pragma: no cover - only without scikit-learn
    raise ImportError(
        "deltaprop.sklearn needs scikit-learn (>= 1.6): pip install 'deltaprop[sklearn]'. "
        f"The error was: {error}"
    ) from error

from . import _class_weight, _skl2onnx, onnx, optim, training
from ._architecture import ACTIVATIONS, INITS
from ._checks import check_bool, check_callables, check_int, check_real
from ._diagnostics import KEYS as DIAGNOSTICS
from ._precision import check_matmul_precision
from ._sklearn_docs import ATTRIBUTES_DOC, CLASS_WEIGHT_DOC, PARAMETERS_DOC
from .network import Network

__all__ = ["DeltapropClassifier", "DeltapropRegressor", "register_skl2onnx"]


def _stochastic(estimator) -> bool:
    """``partial_fit`` exists only for the stochastic optimizers, as in MLP."""
    if estimator.optimizer == "lbfgs":
        raise AttributeError("partial_fit is only available for stochastic optimizers, not 'lbfgs'")
    return True


# scikit-learn's name for the sigmoid, next to deltaprop's own names.
_ACTIVATIONS = {"logistic": "sigmoid", **{name: name for name in ACTIVATIONS}}
# The stochastic update rules, and scikit-learn's full-batch solver.
_OPTIMIZERS = (*optim.NAMES, "lbfgs")
# scipy.sparse formats the estimators take (validate_data converts the others to CSR).
_ACCEPT_SPARSE = ("csr", "csc")
# scikit-learn's names for the output activations, for out_activation_.
_OUT_ACTIVATION_NAMES = {"softmax": "softmax", "sigmoid": "logistic", "identity": "identity"}
_MAX_SEED = np.iinfo(np.int32).max


def _network_name(name: Any, argument: str) -> str:
    """Give deltaprop's name of a hidden activation named as scikit-learn or deltaprop do."""
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        raise ValueError(f"{argument}: expected one of {', '.join(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


def _signature_with(function, name: str, default) -> inspect.Signature:
    """Return ``function``'s signature with one more keyword-only parameter, last."""
    signature = inspect.signature(function)
    added = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
    return signature.replace(parameters=[*signature.parameters.values(), added])


class _BaseDeltaprop(BaseEstimator):
    """What the classifier and the regressor share: parameters and the training loop."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR and CSC, as MLPClassifier (see deltaprop._sparse)
        return tags

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        *,
        activation="relu",
        optimizer="adam",
        learning_rate_init=0.001,
        batch_size="auto",
        max_iter=200,
        max_fun=15000,
        alpha=0.0001,
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        dropout=0.0,
        init="auto",
        shuffle=True,
        random_state=None,
        warm_start=False,
        dtype="float64",
        matmul_precision="highest",
        callbacks=None,
        standardize=False,
        diagnostics=False,
        verbose=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.max_fun = max_fun
        self.alpha = alpha
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.dropout = dropout
        self.init = init
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.dtype = dtype
        self.matmul_precision = matmul_precision
        self.callbacks = callbacks
        self.standardize = standardize
        self.diagnostics = diagnostics
        self.verbose = verbose

    # ------------------------------------------------------------------ subclasses
    def _validate_targets(self, X, y, *, first_pass, incremental, classes, dtype):
        """Check the caller's data; return what the network trains on.

        That is (X, targets for the network, output activation, cost, classes_ or None);
        validate_data sets n_features_in_ when first_pass.
        """
        raise NotImplementedError

    def _score_outputs(self, outputs, targets, sample_weight) -> float:
        """Return the validation score of network outputs against network targets."""
        raise NotImplementedError

    def _weigh_classes(self, train, incremental: bool) -> tuple:
        """Return the training data with its weights times the class weights (classifier)."""
        return train

    # ------------------------------------------------------------------ parameters
    def _hidden_sizes(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        if isinstance(sizes, (str, bytes)) or not np.iterable(sizes):
            raise TypeError(
                f"hidden_layer_sizes: expected an int or a sequence of ints, got {sizes!r}"
            )
        return tuple(check_int(n, "hidden_layer_sizes", 1) for n in sizes)

    def _check_params(self) -> None:
        """Validate the hyper-parameters that `Network` and `optim` do not see as given."""
        self._hidden_sizes()
        self._network_activation()
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"optimizer: expected one of {', '.join(_OPTIMIZERS)}, got {self.optimizer!r}"
            )
        for name in ("early_stopping", "diagnostics"):
            if self.optimizer == "lbfgs" and getattr(self, name):
                raise ValueError(
                    f"{name}: does not apply to optimizer='lbfgs', which trains on all "
                    "samples at once"
                )
        check_bool(self.diagnostics, "diagnostics")
        if self.init != "auto" and self.init not in INITS:
            raise ValueError(
                f"init: expected 'auto' or one of {', '.join(INITS)}, got {self.init!r}"
            )
        if self.dtype not in ("float64", "float32", np.float64, np.float32):
            raise ValueError(f"dtype: expected 'float64' or 'float32', got {self.dtype!r}")
        if (
            check_matmul_precision(self.matmul_precision) == "bfloat16"
            and np.dtype(self.dtype) != np.float32
        ):
            raise ValueError("matmul_precision: 'bfloat16' needs dtype='float32'")
        if self.batch_size != "auto":
            check_int(self.batch_size, "batch_size", 1)
        check_int(self.max_iter, "max_iter", 1)
        check_int(self.max_fun, "max_fun", 1)
        if self.n_iter_no_change != np.inf:
            check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        check_real(self.learning_rate_init, "learning_rate_init", 0.0, low_open=True)
        check_real(self.alpha, "alpha", 0.0)
        check_real(self.tol, "tol", 0.0)
        check_real(self.momentum, "momentum", 0.0, 1.0)
        check_real(self.beta_1, "beta_1", 0.0, 1.0)
        check_real(self.beta_2, "beta_2", 0.0, 1.0)
        check_real(self.epsilon, "epsilon", 0.0, low_open=True)
        check_real(self.dropout, "dropout", 0.0, 1.0)
        check_callables(() if self.callbacks is None else self.callbacks, "callbacks")
        if self.early_stopping:
            check_real(self.validation_fraction, "validation_fraction", 0.0, 1.0, low_open=True)

    def _network_activation(self) -> str | tuple[str, ...]:
        """Give the hidden activation in deltaprop's names: one, or one per hidden layer."""
        if not isinstance(self.activation, (list, tuple)):
            return _network_name(self.activation, "activation")
        n_hidden = len(self._hidden_sizes())
        if len(self.activation) != n_hidden:
            raise ValueError(
                f"activation: expected one name or one per hidden layer ({n_hidden} for "
                f"hidden_layer_sizes={self.hidden_layer_sizes!r}), got {len(self.activation)}"
            )
        return tuple(
            _network_name(name, f"activation[{i}] (hidden layer {i + 1})")
            for i, name in enumerate(self.activation)
        )

    def _new_optimizer(self) -> optim.Optimizer:
        return optim.get(
            self.optimizer,
            lr=self.learning_rate_init,
            momentum=self.momentum,
            betas=(self.beta_1, self.beta_2),
            eps=self.epsilon,
        )

    def _optimizer_for_fit(self, first_pass: bool) -> optim.Optimizer:
        """Return a new optimizer with the current hyper-parameters.

        When training continues with the same kind of optimizer, it takes over the previous
        one's state.
        """
        new = self._new_optimizer()
        previous = self.network_.optimizer
        if not first_pass and previous is not None and previous.name == new.name:
            new.state, new.step = previous.state, previous.step
        return new

    # ------------------------------------------------------------------ fitting
    def _initialize(self, sizes: list[int], output: str, cost: str, seed: int, dtype) -> None:
        activation = self._network_activation()
        init = self.init
        if init == "auto":  # He where every hidden layer is a relu, else Glorot
            relus = {activation} if isinstance(activation, str) else set(activation)
            init = "he" if relus and relus <= {"relu", "leaky_relu"} else "glorot"
        self.network_ = Network(
            sizes,
            activation=activation,
            output=output,
            cost=cost,
            dtype=dtype,
            init=init,
            seed=seed,
        )
        self.n_layers_ = len(sizes)
        self.n_outputs_ = sizes[-1]
        self.out_activation_ = _OUT_ACTIVATION_NAMES[output]
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.best_loss_ = None
        self.validation_scores_ = None
        self.validation_loss_curve_ = None
        self.best_validation_score_ = None
        self.diagnostics_ = None
        self._stopping = None

    def _fit(self, X, y, sample_weight=None, *, incremental=False, classes=None):
        self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        dtype = np.dtype(self.dtype) if first_pass else self.network_.dtype
        X, targets, output, cost, classes = self._validate_targets(
            X, y, first_pass=first_pass, incremental=incremental, classes=classes, dtype=dtype
        )
        n_outputs = classes.size if targets.ndim == 1 else targets.shape[1]
        sample_weight = training.check_sample_weight(sample_weight, X.shape[0], dtype)

        # With an int random_state every call draws the same seeds, as MLP does; the epoch
        # seed is mixed with n_iter_ below so that continued training does not repeat itself.
        init_seed, split_seed, epoch_seed = check_random_state(self.random_state).randint(
            _MAX_SEED, size=3
        )
        self._set_up_network(X.shape[1], n_outputs, output, cost, classes, first_pass, init_seed)
        # Set on every fit, so that set_params(matmul_precision=...) applies to warm starts.
        self.network_.matmul_precision = self.matmul_precision
        train, validation = self._split(X, targets, sample_weight, split_seed)
        train = self._weigh_classes(train, incremental)
        if self.optimizer == "lbfgs":
            converged = self._train_full_batch(train, first_pass)
        else:
            stopping = self._stopping_for_fit(incremental)
            history = self._train(train, validation, stopping, incremental, first_pass, epoch_seed)
            if self.early_stopping:
                self.best_validation_score_ = stopping.best
            else:
                self.best_loss_ = stopping.best
            # Stopped by the rule or by a callback: not a run out of epochs.
            converged = history.stopped_epoch is not None
        if not incremental and not converged:
            warnings.warn(
                f"{type(self).__name__}: max_iter={self.max_iter} epochs reached and the "
                f"optimization hasn't converged yet (tol={self.tol}, "
                f"n_iter_no_change={self.n_iter_no_change}).",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _set_up_network(self, n_features, n_outputs, output, cost, classes, first_pass, seed):
        """Make a new network on a first pass; else check that the fitted one suits y."""
        if first_pass:
            if classes is not None:
                self.classes_ = classes
            sizes = [n_features, *self._hidden_sizes(), n_outputs]
            self._initialize(sizes, output, cost, int(seed), np.dtype(self.dtype))
        elif (n_outputs, output) != (self.n_outputs_, self.network_.output):
            raise ValueError(
                f"y: the fitted network has {self.n_outputs_} {self.network_.output} outputs, "
                f"y needs {n_outputs} {output} outputs; fit without warm_start to start again"
            )

    def _train(self, train, validation, stopping, incremental, first_pass, epoch_seed):
        """Train the network with MLP's settings; return its history.

        The epochs' bookkeeping is done as they end.
        """
        X_train, targets_train, weight_train = train
        n_train = X_train.shape[0]
        batch_size = min(200 if self.batch_size == "auto" else self.batch_size, n_train)
        mean_weight = 1.0 if weight_train is None else float(weight_train.mean())
        l2 = training.l2_coefficient(
            "alpha", self.alpha, batch_size=batch_size, mean_weight=mean_weight
        )

        def record_epoch(epoch: int, metrics: dict[str, float]) -> None:
            self._record_loss(metrics["loss"], n_train)
            if validation is not None:
                self.validation_scores_.append(metrics["val_score"])
                self.validation_loss_curve_.append(metrics["val_loss"])

        history = self.network_.fit(
            X_train,
            targets_train,
            sample_weight=weight_train,
            standardize=bool(self.standardize) and first_pass,  # kept by later fits
            epochs=1 if incremental else self.max_iter,
            batch_size=batch_size,
            optimizer=self._optimizer_for_fit(first_pass),
            lmbda=l2 * n_train,
            dropout=self.dropout,
            early_stopping=stopping,
            metrics=self._epoch_metrics(l2, validation),
            callbacks=[record_epoch, *self._user_callbacks()],
            shuffle=bool(self.shuffle),
            seed=int(np.random.SeedSequence([int(epoch_seed), self.n_iter_]).generate_state(1)[0]),
            diagnostics=self.diagnostics,
            verbose=bool(self.verbose),
        )
        if self.diagnostics:  # over every fit and partial_fit, as loss_curve_
            self.diagnostics_ = self.diagnostics_ or {key: [] for key in DIAGNOSTICS}
            for key, epochs in self.diagnostics_.items():
                epochs.extend(history[key])
        return history

    def _train_full_batch(self, train, first_pass: bool) -> bool:
        """Train with L-BFGS on all the training rows (MLP's ``solver="lbfgs"``).

        Its loss, MLP's, is the network's full-batch objective: the mean cost plus
        ``alpha / (2 n w_mean) ||W||^2``. Returns whether it stopped before ``max_iter``.
        """
        X_train, targets_train, weight_train = train
        n_train = X_train.shape[0]
        mean_weight = 1.0 if weight_train is None else float(weight_train.mean())
        l2 = training.l2_coefficient(
            "alpha", self.alpha, batch_size=n_train, mean_weight=mean_weight
        )

        def record_iteration(iteration: int, metrics: dict[str, float]) -> None:
            self._record_loss(metrics["cost"], n_train)  # the objective: L2 term included

        history = self.network_.fit(
            X_train,
            targets_train,
            sample_weight=weight_train,
            standardize=bool(self.standardize) and first_pass,
            optimizer="lbfgs",
            epochs=self.max_iter,
            max_fun=self.max_fun,
            tol=self.tol,
            lmbda=l2 * n_train,
            callbacks=[record_iteration, *self._user_callbacks()],
            verbose=bool(self.verbose),
        )
        self.best_loss_ = min(self.loss_curve_, default=np.inf)
        self.validation_scores_ = self.best_validation_score_ = None
        self.validation_loss_curve_ = None
        return len(history["cost"]) < self.max_iter

    def _user_callbacks(self) -> list:
        """Return ``callbacks``, each called with the estimator's epoch: ``n_iter_ - 1``.

        The epoch counts over every ``fit`` and ``partial_fit`` (each of which is one epoch
        of the network's own `fit`), as ``loss_curve_`` does; the metrics hold ``"loss"``,
        its last value, also for L-BFGS.
        """

        def at_estimator_epoch(callback):
            return lambda epoch, metrics: callback(
                self.n_iter_ - 1, {**metrics, "loss": self.loss_}
            )

        given = () if self.callbacks is None else check_callables(self.callbacks, "callbacks")
        return [at_estimator_epoch(callback) for callback in given]

    def _record_loss(self, loss: float, n_train: int) -> None:
        """Book an epoch (or L-BFGS iteration) of ``n_train`` samples ending at ``loss``."""
        self.loss_ = loss
        self.loss_curve_.append(loss)
        self.n_iter_ += 1
        self.t_ += n_train

    def _stopping_for_fit(self, incremental: bool) -> training.EarlyStopping:
        """Return MLP's stopping rule as an `EarlyStopping`.

        It watches the training loss, or with ``early_stopping`` the validation score (then
        keeping the best weights). It carries its count over ``partial_fit`` calls and its
        best over warm starts.
        """
        monitor = "val_score" if self.early_stopping else "loss"
        stopping = self._stopping
        if stopping is None or stopping.monitor != monitor:
            stopping = training.EarlyStopping(
                monitor=monitor,
                mode="max" if self.early_stopping else "min",
                restore_best=bool(self.early_stopping),
                running_best=True,
            )
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
                self.validation_loss_curve_, self.best_loss_ = [], None
            else:
                stopping.best_cost = min(self.loss_curve_, default=np.inf)
                self.validation_scores_ = self.best_validation_score_ = None
                self.validation_loss_curve_ = None
        stopping.patience, stopping.min_delta = self.n_iter_no_change, float(self.tol)
        if not incremental:
            stopping.epochs_without_improvement, stopping.stopped_epoch = 0, None
        self._stopping = stopping
        return stopping

    def _epoch_metrics(self, l2: float, validation) -> dict:
        """Return the metrics of `Network.fit` that MLP records.

        MLP's per-epoch loss (the batches' mean cost plus the L2 penalty at the end of the
        epoch) and, with a validation split, its score and its loss (the weighted mean cost
        of its samples plus the same penalty).
        """

        def penalty(net: Network) -> float:
            # Finite weights near 1e154 square to infinity: the loss is then infinite,
            # without a numpy warning (training stops on the non-finite values it meets).
            with np.errstate(over="ignore", invalid="ignore"):
                return 0.5 * l2 * sum(float(np.dot(W.ravel(), W.ravel())) for W in net.weights)

        def loss(net: Network, metrics: dict[str, float]) -> float:
            return metrics["cost"] + penalty(net)

        def validation_score(net: Network, metrics: dict[str, float]) -> float:
            X_val, targets_val, weight_val = validation
            with np.errstate(over="ignore", invalid="ignore"):
                return self._score_outputs(net.predict(X_val), targets_val, weight_val)

        def validation_loss(net: Network, metrics: dict[str, float]) -> float:
            X_val, targets_val, weight_val = validation
            cost = net.objective(X_val, targets_val, sample_weight=weight_val)[0]
            return cost + penalty(net)

        if validation is None:
            return {"loss": loss}
        return {"loss": loss, "val_score": validation_score, "val_loss": validation_loss}

    def _split(self, X, targets, sample_weight, seed):
        """Split off MLP's validation data: (X, targets, weights) to train and to validate on.

        The second is None without ``early_stopping``.
        """
        if not self.early_stopping:
            return (X, targets, sample_weight), None
        stratify = targets if isinstance(self, ClassifierMixin) and targets.ndim == 1 else None
        arrays = [X, targets] + ([] if sample_weight is None else [sample_weight])
        parts = train_test_split(
            *arrays, test_size=self.validation_fraction, random_state=int(seed), stratify=stratify
        )
        train, validation = parts[0::2], parts[1::2]
        if sample_weight is None:
            train, validation = train + [None], validation + [None]
        if validation[0].shape[0] < 2:
            raise ValueError(
                "The validation set is too small: increase validation_fraction or the number "
                "of samples."
            )
        return tuple(train), tuple(validation)

    # ------------------------------------------------------------------ prediction
    def _outputs(self, X) -> np.ndarray:
        """Return the network's output activations for X, of shape (n_samples, n_outputs_)."""
        check_is_fitted(self)
        X = validate_data(
            self, X, reset=False, dtype=self.network_.dtype, accept_sparse=_ACCEPT_SPARSE
        )
        return self.network_.predict(X)

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices in scikit-learn's layout, live views: ``network_.weights[i].T``.

        The i-th is of shape (n_units_i, n_units_{i+1}). Assigning a list of arrays of these
        shapes copies them into the network.
        """
        return [W.T for W in self._fitted_network("coefs_").weights]

    @coefs_.setter
    def coefs_(self, coefs) -> None:
        self._assign("coefs_", [W.T for W in self._fitted_network("coefs_").weights], coefs)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, live views of ``network_.biases``.

        The i-th is of shape (n_units_{i+1},). Assigning a list of arrays of these shapes
        copies them into the network.
        """
        return self._fitted_network("intercepts_").biases

    @intercepts_.setter
    def intercepts_(self, intercepts) -> None:
        self._assign("intercepts_", self._fitted_network("intercepts_").biases, intercepts)

    def _fitted_network(self, attribute: str) -> Network:
        if "network_" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no {attribute} before it is fitted")
        return self.network_

    @staticmethod
    def _assign(attribute: str, targets: list[np.ndarray], values) -> None:
        """Copy ``values`` into the network's parameter views, all shapes checked first."""
        values = [np.asarray(value) for value in values]
        shapes = [target.shape for target in targets]
        if [value.shape for value in values] != shapes:
            raise ValueError(
                f"{attribute}: expected arrays of shapes {shapes}, "
                f"got {[value.shape for value in values]}"
            )
        for target, value in zip(targets, values):
            target[...] = value


class DeltapropClassifier(ClassifierMixin, _BaseDeltaprop):
    __doc__ = f"""A multilayer-perceptron classifier trained by deltaprop's core.

    scikit-learn's `MLPClassifier` interface (see the module documentation for the
    differences). The output is a softmax over the classes with the log-likelihood cost
    (two units for a binary problem); a multilabel target (a 0/1 indicator matrix of shape
    (n_samples, n_labels)) gets one sigmoid unit per label with the cross-entropy.

{PARAMETERS_DOC}{CLASS_WEIGHT_DOC}
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (``arange(n_labels)`` for a multilabel target).
{ATTRIBUTES_DOC}
    Examples
    --------
    >>> import deltaprop
    >>> from deltaprop.sklearn import DeltapropClassifier
    >>> from sklearn.model_selection import train_test_split
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> X, y = deltaprop.datasets.load_digits()
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    >>> model = make_pipeline(StandardScaler(), DeltapropClassifier(random_state=0))
    >>> model.fit(X_train, y_train).score(X_test, y_test) > 0.95
    True
    """

    # The shared parameters, then class_weight: its signature is the base's plus one
    # (set below, for get_params and clone), so that a parameter added to the base needs
    # no second copy here.
    def __init__(self, hidden_layer_sizes=(100,), *, class_weight=None, **parameters):
        super().__init__(hidden_layer_sizes, **parameters)
        self.class_weight = class_weight

    __init__.__signature__ = _signature_with(_BaseDeltaprop.__init__, "class_weight", None)

    def _weigh_classes(self, train, incremental: bool) -> tuple:
        if self.class_weight is None:
            return train
        X, targets, sample_weight = train
        multilabel = targets.ndim == 2
        given = _class_weight.by_index(self.class_weight, self.classes_, multilabel, incremental)
        checked = _class_weight.check(given, self.n_outputs_)
        dtype = self.network_.dtype
        Y = targets if multilabel else np.eye(self.n_outputs_, dtype=dtype)[targets]
        tallies = [_class_weight.tally(checked, Y)]
        return X, targets, _class_weight.weigh(checked, (X, Y, sample_weight), tallies)[2]

    def fit(self, X, y, sample_weight=None):
        """Train the network on (X, y) for up to ``max_iter`` epochs.

        A new network, unless ``warm_start`` and a fitted one: then training continues,
        with the classes of the first fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any type, or a 0/1 indicator matrix for a multilabel target.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Non-negative weights of the samples in the loss; None: all 1.

        Returns
        -------
        self : DeltapropClassifier
            The fitted estimator.

        Raises
        ------
        ValueError, TypeError
            Invalid hyper-parameters or data, fewer than 2 classes, or (with
            ``warm_start``) classes or outputs that differ from the fitted network's.
        DivergenceError
            Training diverged (see `deltaprop.Network.fit`).

        Warns
        -----
        ConvergenceWarning
            ``max_iter`` epochs ran without the stopping rule being met.
        """
        return self._fit(X, y, sample_weight)

    @available_if(_stochastic)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, among ``classes``, or a 0/1 indicator matrix for a multilabel
            target.
        classes : array-like of shape (n_classes,) or None, default=None
            Every class of all the calls; required on the first call, after which ``y``
            may hold only some of them (and ``classes``, if given, must be the same).
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Non-negative weights of the samples in the loss; None: all 1.

        Returns
        -------
        self : DeltapropClassifier
            The estimator, trained one epoch more.

        Raises
        ------
        ValueError, TypeError
            No ``classes`` on the first call, other ``classes`` than on the first call,
            labels not among them, ``early_stopping=True``, or invalid hyper-parameters
            or data.
        DivergenceError
            Training diverged (see `deltaprop.Network.fit`).
        """
        first_call = not hasattr(self, "network_")
        if first_call and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if not first_call and classes is not None:
            if not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(
                    f"classes={classes!r} is not the same as on the first call to partial_fit, "
                    f"which was {self.classes_!r}"
                )
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _validate_targets(self, X, y, *, first_pass, incremental, classes, dtype):
        X, y = validate_data(
            self, X, y, multi_output=True, dtype=dtype, reset=first_pass,
            accept_sparse=_ACCEPT_SPARSE,
        )  # fmt: skip
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        target_type = type_of_target(y)
        if target_type not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"y: {target_type} targets are not supported")
        if target_type == "multilabel-indicator":
            classes = np.arange(y.shape[1]) if first_pass else self.classes_
            return X, y.astype(dtype), "sigmoid", "cross_entropy", classes

        seen = unique_labels(y)
        if first_pass:
            classes = seen if classes is None else unique_labels(classes)
            if classes.size < 2:
                raise ValueError(
                    f"y: a classifier needs samples of at least 2 classes; got 1 class "
                    f"({classes[0]!r})"
                )
        else:
            classes = self.classes_
            if self.warm_start and not incremental and not np.array_equal(seen, classes):
                raise ValueError(
                    f"y: warm_start needs the classes of the previous fit, {classes!r}; "
                    f"y has {seen!r}"
                )
        unknown = np.setdiff1d(seen, classes)
        if unknown.size:
            raise ValueError(f"y: has classes {unknown!r} not among the classes {classes!r}")
        return X, np.searchsorted(classes, y), "softmax", "log_likelihood", classes

    def _score_outputs(self, outputs, targets, sample_weight) -> float:
        if not np.isfinite(outputs).all():
            return np.nan
        if targets.ndim == 2:
            return accuracy_score(targets > 0.5, outputs > 0.5, sample_weight=sample_weight)
        return accuracy_score(targets, outputs.argmax(axis=1), sample_weight=sample_weight)

    def predict(self, X):
        """Predict the class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)
            Labels from ``classes_``, or 0/1 (int64) for a multilabel target.
        """
        proba = self._outputs(X)
        if self.out_activation_ == "logistic":
            return (proba > 0.5).astype(np.int64)
        return self.classes_[proba.argmax(axis=1)]

    def predict_proba(self, X):
        """Predict class probabilities: the network's softmax (or, multilabel, sigmoid) outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        return self._outputs(X)

    def predict_log_proba(self, X):
        """Predict the logarithm of `predict_proba` (-inf where a probability underflowed to 0).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def to_onnx(self, path, *, zipmap: bool = False, opset: int = onnx.OPSET) -> None:
        """Write the fitted classifier as an ONNX model with skl2onnx's conventions.

        Input ``X`` (N, n_features) of the network's dtype; outputs ``label`` (N,), the
        values of ``classes_`` (integers or strings), and ``probabilities`` (N, n_classes),
        `predict_proba`. A multilabel classifier's ``label`` is (N, n_labels) of 0/1
        (int64). Needs ``pip install "deltaprop[onnx]"``; written atomically.

        Parameters
        ----------
        path : str or os.PathLike
            Destination file (``.onnx``).
        zipmap : bool, default=False
            skl2onnx's default form instead: outputs ``output_label`` and
            ``output_probability``, a sequence of maps from class to float32 probability.
        opset : int, default=deltaprop.onnx.OPSET
            ONNX opset of the default domain.

        Raises
        ------
        NotFittedError
            The classifier is not fitted.
        ImportError
            The ``onnx`` package is not installed.
        TypeError
            Classes that are neither integers nor strings.
        ValueError, OSError
            An invalid ``opset``, or a file that cannot be written.
        """
        check_is_fitted(self)
        net = self.network_
        model = onnx.classifier_model(
            net.architecture,
            *net.layer_copies(),
            self.classes_,
            multilabel=self.out_activation_ == "logistic",
            zipmap=zipmap,
            opset=opset,
            scaling=net._input_scaling,
        )
        onnx.write(path, model)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class DeltapropRegressor(RegressorMixin, _BaseDeltaprop):
    __doc__ = f"""A multilayer-perceptron regressor trained by deltaprop's core.

    scikit-learn's `MLPRegressor` interface (see the module documentation for the
    differences): identity outputs and the quadratic cost 1/2 ||a - y||^2, one output unit
    per target column.

{PARAMETERS_DOC}
    Attributes
    ----------
{ATTRIBUTES_DOC}"""

    def fit(self, X, y, sample_weight=None):
        """Train the network on (X, y) for up to ``max_iter`` epochs.

        A new network, unless ``warm_start`` and a fitted one: then training continues.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Non-negative weights of the samples in the loss; None: all 1.

        Returns
        -------
        self : DeltapropRegressor
            The fitted estimator.

        Raises
        ------
        ValueError, TypeError
            Invalid hyper-parameters or data, or (with ``warm_start``) a number of targets
            that differs from the fitted network's.
        DivergenceError
            Training diverged (see `deltaprop.Network.fit`).

        Warns
        -----
        ConvergenceWarning
            ``max_iter`` epochs ran without the stopping rule being met.
        """
        return self._fit(X, y, sample_weight)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch on (X, y), continuing from the current network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Non-negative weights of the samples in the loss; None: all 1.

        Returns
        -------
        self : DeltapropRegressor
            The estimator, trained one epoch more.

        Raises
        ------
        ValueError, TypeError
            ``early_stopping=True``, invalid hyper-parameters or data, or a number of
            targets that differs from the fitted network's.
        DivergenceError
            Training diverged (see `deltaprop.Network.fit`).
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_targets(self, X, y, *, first_pass, incremental, classes, dtype):
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=dtype, reset=first_pass,
            accept_sparse=_ACCEPT_SPARSE,
        )  # fmt: skip
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        # Always 2-D: to the network a 1-D array with several outputs means class indices.
        targets = np.asarray(y, dtype=dtype).reshape(y.shape[0], -1)
        return X, targets, "identity", "quadratic", None

    def _score_outputs(self, outputs, targets, sample_weight) -> float:
        if not np.isfinite(outputs).all():
            return np.nan
        return r2_score(targets, outputs, sample_weight=sample_weight)

    def predict(self, X):
        """Predict the targets of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets)
            1-D for a single target.
        """
        outputs = self._outputs(X)
        return outputs[:, 0] if self.n_outputs_ == 1 else outputs

    def to_onnx(self, path, *, opset: int = onnx.OPSET) -> None:
        """Write the fitted regressor as an ONNX model with skl2onnx's conventions.

        Input ``X`` (N, n_features) of the network's dtype; output ``variable`` (N,
        n_targets). Needs ``pip install "deltaprop[onnx]"``; written atomically.

        Parameters
        ----------
        path : str or os.PathLike
            Destination file (``.onnx``).
        opset : int, default=deltaprop.onnx.OPSET
            ONNX opset of the default domain.

        Raises
        ------
        NotFittedError
            The regressor is not fitted.
        ImportError
            The ``onnx`` package is not installed.
        ValueError, OSError
            An invalid ``opset``, or a file that cannot be written.
        """
        check_is_fitted(self)
        net = self.network_
        scaling = net._input_scaling
        model = onnx.regressor_model(
            net.architecture, *net.layer_copies(), opset=opset, scaling=scaling
        )
        onnx.write(path, model)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def register_skl2onnx() -> None:
    """Register the estimators' converters with skl2onnx, so that pipelines ending in one convert.

    After it, ``skl2onnx.to_onnx(Pipeline([("scale", StandardScaler()), ("net",
    DeltapropClassifier())]), X[:1])`` converts the fitted pipeline: the estimator's nodes
    are those of its ``to_onnx`` (its ``standardize`` scaling included), with skl2onnx's
    outputs (``label`` and ``probabilities``; in float32 a ZipMap unless
    ``options={"zipmap": False}``, which float64 needs not: its ZipMap would take float32
    only; ``variable`` for a regressor) and a ``Cast`` where skl2onnx's dtype is not the
    network's. Call it once per process, before converting (again: it re-registers).

    Raises
    ------
    ImportError
        skl2onnx is not installed (``pip install skl2onnx``).
    """
    _skl2onnx.register(DeltapropClassifier, DeltapropRegressor)
