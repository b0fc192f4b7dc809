"""skl2onnx's converters for the estimators: a pipeline ending in one converts.

`register` tells skl2onnx (``update_registered_converter``) how to compute the outputs'
shapes and how to write the nodes of a fitted `DeltapropClassifier` or `DeltapropRegressor`,
so that ``skl2onnx.to_onnx(Pipeline([..., ("net", DeltapropClassifier())]), X[:1])``
converts. The nodes are those of the estimator's own ``to_onnx`` (`deltaprop.onnx`, its
input scaling included), renamed into skl2onnx's scope, with a ``Cast`` at either end when
skl2onnx's tensors are of another dtype than the network's. skl2onnx is imported by
`register` only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import onnx

__all__ = ["register"]


def register(classifier: type, regressor: type) -> None:
    """Register the converters of the two estimator classes with skl2onnx (again: replaced).

    Parameters
    ----------
    classifier, regressor : type
        `DeltapropClassifier` and `DeltapropRegressor`.

    Raises
    ------
    ImportError
        skl2onnx is not installed.
    """
    try:
        from skl2onnx import update_registered_converter
    except ImportError as error:
        raise ImportError(
            f"register_skl2onnx needs skl2onnx: pip install skl2onnx ({error})"
        ) from error
    update_registered_converter(
        classifier,
        "DeltapropClassifier",
        _classifier_shapes,
        _convert_classifier,
        overwrite=True,
        parser=_parse_classifier,
        # What skl2onnx's classifier parser asks of every classifier as it adds the ZipMap.
        options={"zipmap": [True, False, "columns"], "nocl": [True, False]},
    )
    update_registered_converter(
        regressor, "DeltapropRegressor", _regressor_shapes, _convert_regressor, overwrite=True
    )


def _parse_classifier(scope: Any, model: Any, inputs: list, custom_parsers: Any = None) -> list:
    """Declare the classifier's operator and outputs: skl2onnx's parser, but for float64.

    skl2onnx's classifier parser ends every classifier with a ZipMap (its default option
    ``zipmap=True``), which takes float32 probabilities only: onnxruntime refuses the
    float64 model it writes. For float64 inputs the default is therefore the two tensors
    ``label`` and ``probabilities`` (``zipmap=False``), so that a float64 pipeline converts
    and runs with no option and keeps its probabilities' float64 precision;
    ``zipmap="columns"`` (a tensor per class) is kept as asked. float32 inputs get
    skl2onnx's own parser: its ZipMap by default.
    """
    from skl2onnx._parse import _parse_sklearn_classifier
    from skl2onnx.common.data_types import DoubleTensorType

    zipmap = scope.get_options(model, {"zipmap": True})["zipmap"]
    if not (isinstance(inputs[0].type, DoubleTensorType) and zipmap is True):
        return _parse_sklearn_classifier(scope, model, inputs, custom_parsers=custom_parsers)
    from skl2onnx import get_model_alias
    from skl2onnx.common.data_types import Int64TensorType

    operator = scope.declare_local_operator(get_model_alias(type(model)), model)
    operator.inputs = inputs
    # Their types are _classifier_shapes'.
    operator.outputs.append(scope.declare_local_variable("label", Int64TensorType()))
    operator.outputs.append(scope.declare_local_variable("probabilities", DoubleTensorType()))
    return operator.outputs


def _input_type(operator: Any) -> Any:
    """Return skl2onnx's tensor type of the outputs: float64 for float64 inputs, else float32."""
    from skl2onnx.common import data_types

    if isinstance(operator.inputs[0].type, data_types.DoubleTensorType):
        return data_types.DoubleTensorType
    return data_types.FloatTensorType


def _classifier_shapes(operator: Any) -> None:
    """Label (N,) or, multilabel, (N, n_labels); probabilities (N, n_classes)."""
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType

    estimator = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    classes = np.asarray(estimator.classes_)
    multilabel = estimator.out_activation_ == "logistic"
    label = Int64TensorType if multilabel or classes.dtype.kind in "iub" else StringTensorType
    operator.outputs[0].type = label([n, classes.size] if multilabel else [n])
    operator.outputs[1].type = _input_type(operator)([n, classes.size])


def _regressor_shapes(operator: Any) -> None:
    """Predictions (N, n_targets)."""
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = _input_type(operator)([n, operator.raw_operator.n_outputs_])


def _convert_classifier(scope: Any, operator: Any, container: Any) -> None:
    estimator = operator.raw_operator
    net = estimator.network_
    model = onnx.classifier_model(
        net.architecture,
        *net.layer_copies(),
        estimator.classes_,
        multilabel=estimator.out_activation_ == "logistic",
        opset=container.target_opset,
        scaling=net._input_scaling,
    )
    outputs = {"label": operator.outputs[0], "probabilities": operator.outputs[1]}
    _embed(scope, operator, container, model, net.dtype, outputs)


def _convert_regressor(scope: Any, operator: Any, container: Any) -> None:
    net = operator.raw_operator.network_
    model = onnx.regressor_model(
        net.architecture,
        *net.layer_copies(),
        opset=container.target_opset,
        scaling=net._input_scaling,
    )
    _embed(scope, operator, container, model, net.dtype, {"variable": operator.outputs[0]})


def _embed(scope, operator, container, model, dtype: np.dtype, outputs: dict) -> None:
    """Copy a model's initializers and nodes into skl2onnx's container, renamed.

    Its input reads the operator's input (cast to the network's dtype), and its outputs
    named in ``outputs`` are the operator's (cast to their declared type).
    """
    from onnx import TensorProto, helper, numpy_helper

    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    names = {onnx.INPUT: _cast(scope, container, operator.inputs[0], element, into=True)}
    for name, variable in outputs.items():
        names[name] = _cast(scope, container, variable, element, into=False)
    for tensor in model.graph.initializer:
        names[tensor.name] = scope.get_unique_variable_name(tensor.name)
        if tensor.data_type == TensorProto.STRING:
            values = numpy_helper.to_array(tensor).ravel().tolist()
            container.add_initializer(names[tensor.name], tensor.data_type, tensor.dims, values)
        else:
            container.add_initializer(names[tensor.name], tensor.data_type, tensor.dims, tensor)

    def renamed(tensor: str) -> str:
        if tensor not in names:
            names[tensor] = scope.get_unique_variable_name(tensor)
        return names[tensor]

    for node in model.graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        container.add_node(
            node.op_type,
            [renamed(t) for t in node.input],
            [renamed(t) for t in node.output],
            op_domain=node.domain,
            name=scope.get_unique_operator_name(f"Deltaprop{node.op_type}"),
            **attributes,
        )


def _cast(scope, container, variable, element: int, *, into: bool) -> str:
    """Return the tensor the network reads (``into``) or writes for an operator's variable.

    That is the variable itself when its type is the network's dtype, else a new tensor
    cast from it (into the network) or to it (out of the network).
    """
    declared = variable.type.to_onnx_type().tensor_type.elem_type
    if declared == element or declared not in (1, 11):  # FLOAT, DOUBLE: labels stay as they are
        return variable.full_name
    inside = scope.get_unique_variable_name(f"{variable.onnx_name}_cast")
    source, target = (variable.full_name, inside) if into else (inside, variable.full_name)
    container.add_node(
        "Cast",
        [source],
        [target],
        name=scope.get_unique_operator_name("DeltapropCast"),
        to=element if into else declared,
    )
    return inside
