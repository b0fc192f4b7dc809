"""The text the estimators' docstrings share: their parameters and fitted attributes."""

PARAMETERS_DOC = """\
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units of each hidden layer; ``()`` gives a network without hidden layers.
    activation : {"relu", "tanh", "logistic", "sigmoid", "leaky_relu", "identity"} or \
list of them, default="relu"
        Hidden-layer activation ("logistic" is scikit-learn's name for "sigmoid"): one for
        every hidden layer, or a list or tuple of one per ``hidden_layer_sizes`` entry
        (kept as given, checked by ``fit``).
    optimizer : {"adam", "sgd", "momentum", "nesterov", "adamw", "rprop", "lbfgs"}, \
default="adam"
        The update rule (see `deltaprop.optim`), MLP's ``solver``. "lbfgs" minimises the
        loss over all the training samples at once with scipy's L-BFGS-B, as MLP does:
        ``max_iter`` iterations and ``max_fun`` evaluations at most, ``tol`` on the
        gradient; ``batch_size``, the learning rate and early stopping do not apply.
    learning_rate_init : float, default=0.001
        Learning rate, constant during training.
    batch_size : int or "auto", default="auto"
        Mini-batch size; "auto" is 200. Either is capped at the number of samples trained
        on (without the validation split), without MLP's warning.
    max_iter : int, default=200
        Maximum number of epochs of one ``fit`` (iterations with "lbfgs").
    max_fun : int, default=15000
        With "lbfgs": maximum number of evaluations of the loss.
    alpha : float, default=0.0001
        L2 strength with MLP's meaning (see the module documentation for the mapping).
    momentum : float, default=0.9
        Momentum of "momentum" and "nesterov", in [0, 1).
    beta_1 : float, default=0.9
        Decay rate of Adam's first moment estimates ("adam", "adamw"), in [0, 1).
    beta_2 : float, default=0.999
        Decay rate of Adam's second moment estimates ("adam", "adamw"), in [0, 1).
    epsilon : float, default=1e-8
        Adam's denominator offset, > 0.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified for single-label
        classification), stop when its score (accuracy or R^2) has not risen by ``tol`` for
        ``n_iter_no_change`` epochs, and keep the weights of the best score.
    validation_fraction : float, default=0.1
        Fraction held out by ``early_stopping``, in (0, 1).
    n_iter_no_change : int or numpy.inf, default=10
        Epochs without an improvement of ``tol`` after which training stops.
    tol : float, default=1e-4
        Smallest improvement of the loss (or validation score) that counts.
    dropout : float, default=0.0
        Rate of inverted dropout on the hidden layers during training, in [0, 1).
    init : {"auto", "he", "glorot", "normal_scaled", "normal"}, default="auto"
        Weight initialiser (see `deltaprop.Network`); "auto" is "he" when every hidden
        activation is "relu" or "leaky_relu", "glorot" otherwise.
    shuffle : bool, default=True
        Visit the training samples in a new random order each epoch.
    random_state : int, numpy.random.RandomState or None, default=None
        Seeds the initial weights, the validation split, the shuffling and dropout. An int
        makes ``fit`` reproducible.
    warm_start : bool, default=False
        Let ``fit`` continue from the fitted network (and its optimizer state) rather than
        start again.
    dtype : {"float64", "float32"}, default="float64"
        Precision of the network and of all its computation.
    matmul_precision : {"highest", "bfloat16"}, default="highest"
        Precision of the network's matrix products: ``"bfloat16"`` (with
        ``dtype="float32"``, ``pip install "deltaprop[bf16]"``) multiplies bfloat16
        operands with float32 accumulation (`deltaprop.Network.matmul_precision`).
    callbacks : callable, sequence of callable or None, default=None
        Functions ``f(epoch, metrics) -> bool``, as `deltaprop.Network.fit` takes them,
        called after each epoch (L-BFGS: iteration) with the estimator's epoch
        ``n_iter_ - 1`` (counted over every ``fit`` and ``partial_fit``) and that epoch's
        metrics: ``"loss"`` (of ``loss_curve_``), ``"cost"`` (the batches' mean cost),
        ``"time"``, ``"lr"`` (not with L-BFGS) and, with ``early_stopping``,
        ``"val_score"`` and ``"val_loss"``. A true result stops training after that epoch
        (without a ``ConvergenceWarning``); an exception propagates, the curves holding
        the epochs completed. Kept as given (``clone`` copies it as scikit-learn copies
        any parameter).
    standardize : bool, default=False
        Standardize the inputs as ``StandardScaler`` does (`deltaprop.Network.fit`'s
        ``standardize``): the fit that makes the network learns each feature's mean and
        standard deviation from the training samples (weighted by ``sample_weight``, the
        ``early_stopping`` split held out); the network keeps them (``network_.input_mean``,
        ``network_.input_scale``) and applies them in prediction, in warm-started fits and
        ``partial_fit`` (which do not learn them again), in ``to_onnx`` and in skl2onnx's
        conversion (`register_skl2onnx`).
    diagnostics : bool, default=False
        Record how each layer learns, epoch by epoch, in ``diagnostics_`` (`deltaprop.Network.fit`'s
        ``diagnostics``); not with ``optimizer="lbfgs"``.
    verbose : bool, default=False
        Print one line per epoch.
"""

CLASS_WEIGHT_DOC = """\
    class_weight : None, "balanced", dict or list, default=None
        Weights of the classes, multiplied with ``sample_weight`` in the training loss
        (not in the validation score and loss): a dict maps labels of ``y`` to weights
        (labels it leaves out weigh 1); "balanced" is scikit-learn's
        ``n_samples / (n_classes * np.bincount(y))`` over the training samples (without
        the validation split). A multilabel target is weighed per label column, as
        scikit-learn weighs several outputs: "balanced" or a list of one dict
        ``{0: w0, 1: w1}`` (or "balanced") per column, a sample weighing the product of
        its columns' weights. ``partial_fit`` refuses "balanced", as ``SGDClassifier``
        does: give a dict computed once.
"""

ATTRIBUTES_DOC = """\
    network_ : deltaprop.Network
        The trained network (with its optimizer in ``network_.optimizer``).
    coefs_ : list of ndarray, the i-th of shape (n_units_i, n_units_{i+1})
        Weight matrices in scikit-learn's layout: ``coefs_[i]`` is ``network_.weights[i].T``,
        a live view into the network. Assigning a list of arrays of these shapes copies them
        into the network (so does assigning ``intercepts_``).
    intercepts_ : list of ndarray, the i-th of shape (n_units_{i+1},)
        Bias vectors, live views of ``network_.biases``.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen during ``fit``, when ``X`` had string column names.
    n_iter_ : int
        Epochs the network has been trained for.
    t_ : int
        Training samples seen (summed over the epochs).
    loss_ : float
        Loss of the last epoch.
    loss_curve_ : list of float
        Loss of each epoch, L2 penalty included.
    best_loss_ : float or None
        Lowest loss reached; None with ``early_stopping``.
    validation_scores_ : list of float or None
        Score on the validation split after each epoch with ``early_stopping``, else None.
    validation_loss_curve_ : list of float or None
        Loss on the validation split after each epoch with ``early_stopping`` (its samples'
        weighted mean cost plus the L2 penalty of ``loss_curve_``), else None.
    best_validation_score_ : float or None
        Best validation score with ``early_stopping``, else None.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of output units.
    out_activation_ : str
        Output activation, in scikit-learn's names: "softmax", "logistic" or "identity".
    diagnostics_ : dict of str to list, or None
        With ``diagnostics``: ``"learning_speed"``, ``"update_ratio"``, ``"saturated"`` and
        ``"dead"``, each a list of one entry per epoch (over every ``fit`` and
        ``partial_fit`` since the network was made), each entry one value per layer
        (None where the measure does not apply), as in `deltaprop.Network.fit`'s history;
        None without.
"""
