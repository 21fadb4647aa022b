"""Verify that a two-input model really is Siamese: both branches share one encoder.

Verification works on the model's graph and behaviour, never on layer names: it traces which
layers depend on the left input only and which on the right input only (the two branches), and
then checks object identity, parameter counts, what one optimizer step does, and that all of it
survives a `.keras` save and reload.

The tracing is public because training needs it too: `trace_branches` divides a model into its
branches and head, and `shared_encoder` finds the one layer object called on both inputs (the
fast path of `siamese.training` runs that encoder once on both sides). Both read the functional
graph through `layer_calls`, the only code in the project that touches Keras' private graph
attributes.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

ENCODING_TOLERANCE = 1e-6  # left vs right encodings of one input: equal up to float noise


@dataclass(frozen=True)
class SharingCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class SharingReport:
    """The outcome of every check plus the parameter arithmetic of sharing."""

    checks: tuple[SharingCheck, ...]
    encoder_params: int  # the shared encoder, counted once
    head_params: int
    total_params: int
    unshared_params: int  # what the same model with one encoder per side would have
    max_encoding_difference: float

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def params_saved(self) -> int:
        return self.unshared_params - self.total_params

    def failures(self) -> list[str]:
        return [f"{check.name}: {check.detail}" for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed, "params_saved": self.params_saved}


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer (or operation) in a functional graph: what it was called on, what it returned."""

    layer: Any  # a keras.Layer, or a keras.Operation such as an op on tensors
    inputs: tuple[Any, ...]  # the KerasTensors it was called on, flattened
    outputs: tuple[Any, ...]


@dataclass(frozen=True)
class Branches:
    """How a two-input model divides: each input's branch, where they meet, and the head after.

    `layers[side]`: the layers with weights that the branch of input `side` (0 left, 1 right)
    calls, each once; `outputs[side]`: the branch's output, where the head takes it;
    `head_layers`: what depends on both inputs.
    """

    layers: tuple[list[keras.Layer], list[keras.Layer]]
    outputs: tuple[Any, Any]
    head_layers: list[keras.Layer]

    def variables(self, side: int) -> dict[int, keras.Variable]:
        return {id(variable): variable for layer in self.layers[side] for variable in layer.weights}


@dataclass(frozen=True)
class SharedEncoder:
    """One layer object called directly on the left input and directly on the right input."""

    layer: keras.Layer  # usually a sub-model: the encoder
    encodings: tuple[Any, Any]  # its outputs on the left and on the right input


def verify_weight_sharing(
    model: keras.Model,
    left: np.ndarray,
    right: np.ndarray,
    labels: np.ndarray,
    loss: str = "binary_crossentropy",
    saved_path: str | Path | None = None,
) -> SharingReport:
    """Check that `model`'s two branches share one encoder, before and after a save/reload.

    Checks: the branches call the same layer objects and hold the same variable objects; the
    parameter count is the encoder once plus the head; after one optimizer step the shared
    variables changed and the left and right encodings of one input are still identical; and a
    `.keras` save and reload keeps all of that and the predictions.

    The probe is one small batch, so everything runs eagerly: tracing a graph function (what
    `predict` or a compiled `train_on_batch` build first) costs far more than running it once.

    The model is left as it was given: its weights (trainable and not) are restored after the
    optimizer step, and its compile state (optimizer, loss, metrics) is not touched, because the
    step is taken through a separate functional view of the same layers and variables, with its
    own fresh RMSprop optimizer that is then discarded.

    Args:
        model: a functional model with two inputs (left, right) and one output.
        left, right, labels: a small probe batch used for the behavioural checks.
        loss: the loss of the optimizer step, matching the labels (e.g. mean squared error for
            numeric targets).
        saved_path: a `.keras` file `model` was already saved to (or loaded from). The
            after-reload checks then load this file instead of saving a temporary copy: this
            skips a save, and it verifies the very file a pipeline goes on to register. Without
            it the model is saved to a temporary file and reloaded from there.

    Returns:
        A `SharingReport`; `report.passed` is False if any check failed.

    Raises:
        ValueError: the model does not have exactly two inputs or its output does not combine
            them, or `saved_path` is not an existing `.keras` file.
    """
    if len(model.inputs) != 2:
        raise ValueError(f"expected a model with two inputs (left, right), got {len(model.inputs)}")
    if saved_path is not None and not (Path(saved_path).suffix == ".keras" and Path(saved_path).is_file()):
        raise ValueError(f"saved_path must be an existing .keras file, got {str(saved_path)!r}")
    branches = trace_branches(model)
    checks, difference, predictions = _check_model(model, branches, left, right, labels, loss, prefix="")
    if saved_path is None:
        with tempfile.TemporaryDirectory(prefix="sharing-") as directory:
            path = Path(directory) / "model.keras"
            model.save(path)
            reloaded = keras.saving.load_model(path, compile=False)
    else:
        reloaded = keras.saving.load_model(saved_path, compile=False)
    reloaded_checks, reloaded_difference, reloaded_predictions = _check_model(
        reloaded, trace_branches(reloaded), left, right, labels, loss, prefix="after_reload/"
    )
    checks += reloaded_checks
    checks.append(_check_same_predictions(predictions, reloaded_predictions))
    encoder_params = _count(branches.variables(0).values())
    head_params = _count(_head_variables(branches).values())
    return SharingReport(
        checks=tuple(checks),
        encoder_params=encoder_params,
        head_params=head_params,
        total_params=model.count_params(),
        unshared_params=2 * encoder_params + head_params,
        max_encoding_difference=max(difference, reloaded_difference),
    )


def _check_model(
    model: keras.Model,
    branches: Branches,
    left: np.ndarray,
    right: np.ndarray,
    labels: np.ndarray,
    loss: str,
    prefix: str,
) -> tuple[list[SharingCheck], float, list[np.ndarray]]:
    """Every check of one model, its largest encoding difference and its outputs on the probe."""
    view = _probe_view(model, branches)
    checks = [
        _check_same_layers(branches),
        _check_shared_variables(branches),
        _check_parameter_count(model, branches),
    ]
    before_step, predictions = _encodings_and_predictions(view, left, right)
    checks.append(
        SharingCheck(
            "identical_encodings",
            before_step <= ENCODING_TOLERANCE,
            f"left and right encodings of the same input differ by at most {before_step:.3g}",
        )
    )
    step_check, after_step = _check_one_step(model, branches, view, left, right, labels, loss)
    checks.append(step_check)
    checks = [SharingCheck(prefix + check.name, check.passed, check.detail) for check in checks]
    return checks, max(before_step, after_step), predictions


def _check_same_layers(branches: Branches) -> SharingCheck:
    left_ids = {id(layer) for layer in branches.layers[0]}
    right_ids = {id(layer) for layer in branches.layers[1]}
    passed = bool(left_ids) and left_ids == right_ids
    if passed:
        detail = f"both branches call the same object(s): {_describe_layers(branches.layers[0])}"
    else:
        detail = (
            f"the branches use different layer objects: left {_describe_layers(branches.layers[0])}; "
            f"right {_describe_layers(branches.layers[1])}"
        )
    return SharingCheck("same_encoder_object", passed, detail)


def _describe_layers(layers: list[keras.Layer]) -> str:
    return ", ".join(sorted(layer.name for layer in layers)) or "no layer with weights"


def _check_shared_variables(branches: Branches) -> SharingCheck:
    left, right = branches.variables(0), branches.variables(1)
    shared = left.keys() & right.keys()
    passed = bool(left) and left.keys() == right.keys()
    return SharingCheck(
        "shared_variables",
        passed,
        f"{len(shared)} variable objects shared; {len(left.keys() - shared)} only left, "
        f"{len(right.keys() - shared)} only right",
    )


def _check_parameter_count(model: keras.Model, branches: Branches) -> SharingCheck:
    encoder = _count(branches.variables(0).values())
    head = _count(_head_variables(branches).values())
    total = model.count_params()
    return SharingCheck(
        "parameter_count",
        total == encoder + head,
        f"model {total:,} vs encoder once {encoder:,} + head {head:,} = {encoder + head:,}",
    )


def _check_one_step(
    model: keras.Model,
    branches: Branches,
    view: keras.Model,
    left: np.ndarray,
    right: np.ndarray,
    labels: np.ndarray,
    loss: str,
) -> tuple[SharingCheck, float]:
    """One RMSprop step on the probe, then the encodings again; the model's weights are restored.

    The step goes through Keras' own `train_on_batch`, as training does (any backend, layer
    losses included), run eagerly, on a functional view of the model's graph: the view holds
    the same layer and variable objects, so the step updates the model's variables while the
    model's own compile state stays as it was.
    """
    shared = [v for key, v in branches.variables(0).items() if key in branches.variables(1)]
    snapshot = model.get_weights()
    before = [keras.ops.convert_to_numpy(variable) for variable in shared]
    outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    stepper = keras.Model(model.inputs, outputs, name=f"{model.name}_one_step")
    stepper.compile(optimizer=keras.optimizers.RMSprop(), loss=loss, run_eagerly=True)
    stepper.train_on_batch([left, right], labels)
    changed = sum(not np.array_equal(old, keras.ops.convert_to_numpy(v)) for old, v in zip(before, shared))
    difference = _encoding_difference(view, left)
    model.set_weights(snapshot)
    passed = bool(shared) and changed > 0 and difference <= ENCODING_TOLERANCE
    detail = (
        f"after one optimizer step {changed} of {len(shared)} shared variables changed and the "
        f"encodings of one input differ by at most {difference:.3g}"
    )
    return SharingCheck("one_step_update", passed, detail), difference


def _check_same_predictions(predictions: list[np.ndarray], reloaded: list[np.ndarray]) -> SharingCheck:
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(predictions, reloaded))
    return SharingCheck(
        "after_reload/same_predictions",
        difference <= ENCODING_TOLERANCE,
        f"predictions before and after a .keras save and reload differ by at most {difference:.3g}",
    )


def _probe_view(model: keras.Model, branches: Branches) -> keras.Model:
    """One functional view of the model: both inputs to (left encoding, right encoding, *outputs).

    A single view serves the encoding checks and the predictions, so each needs one eager call.
    """
    return keras.Model(model.inputs, [*branches.outputs, *model.outputs], name=f"{model.name}_probe")


def _encodings_and_predictions(
    view: keras.Model, left: np.ndarray, right: np.ndarray
) -> tuple[float, list[np.ndarray]]:
    """`_encoding_difference` of `left`, and the model's outputs on the probe pairs (left, right).

    With both sides of one shape a single call on a doubled batch answers both: its first half
    feeds `left` to both branches, its second half is the probe pairs. An eager call of a small
    model costs per operation, not per example, so this halves the time.
    """
    if np.shape(left)[1:] != np.shape(right)[1:]:
        return _encoding_difference(view, left), _call(view, left, right)[2:]
    count = len(left)
    outputs = _call(view, np.concatenate([left, left]), np.concatenate([left, right]))
    left_encoding, right_encoding = (output[:count] for output in outputs[:2])
    return float(np.max(np.abs(left_encoding - right_encoding))), [output[count:] for output in outputs[2:]]


def _encoding_difference(view: keras.Model, inputs: np.ndarray) -> float:
    """The largest difference between the encodings of `inputs` via the left and the right branch."""
    left_encoding, right_encoding = _call(view, inputs, inputs)[:2]
    return float(np.max(np.abs(left_encoding - right_encoding)))


def _call(view: keras.Model, left: np.ndarray, right: np.ndarray) -> list[np.ndarray]:
    """Call the view directly: the probe is one small batch, and `predict` would trace a function."""
    return [keras.ops.convert_to_numpy(output).astype(np.float32) for output in view([left, right], training=False)]


def layer_calls(model: keras.Model) -> list[LayerCall]:
    """Every call in a functional model's graph that its outputs depend on, once each, in dependency order.

    A call comes after the calls that made its inputs; the walk goes back from the outputs to
    the model's inputs. Keras has no public API for a model's
    graph (`get_config` describes it by layer names, which must not matter here), so this reads
    what Keras' own `Functional` reads: each tensor's `_keras_history` and each layer's
    `_inbound_nodes`. This is the one place in the project that does; the rest of the sharing
    check and the training fast path use what it returns.
    """
    input_ids = {id(tensor) for tensor in model.inputs}
    calls: list[LayerCall] = []
    visited: set[int] = set()

    def visit(tensor: Any) -> None:
        history = getattr(tensor, "_keras_history", None)
        if id(tensor) in input_ids or history is None:
            return
        operation, node_index, _ = history
        node = operation._inbound_nodes[node_index]
        if id(node) in visited:
            return
        visited.add(id(node))
        for argument in node.input_tensors:
            visit(argument)
        calls.append(LayerCall(operation, tuple(node.input_tensors), tuple(node.output_tensors)))

    for output in model.outputs:
        visit(output)
    return calls


def trace_branches(model: keras.Model) -> Branches:
    """Divide a two-input functional model into its left branch, right branch and head.

    Each call is tagged with the model inputs it depends on. A call that depends on one input
    only belongs to that input's branch; a call that depends on both is in the head, and its
    arguments that depend on one input only are the branch outputs. By object identity only.

    Raises:
        ValueError: the model does not have two inputs, or its output does not combine a left
            and a right branch.
    """
    if len(model.inputs) != 2:
        raise ValueError(f"expected a model with two inputs (left, right), got {len(model.inputs)}")
    sides: dict[int, frozenset[int]] = {id(tensor): frozenset({side}) for side, tensor in enumerate(model.inputs)}
    layers: tuple[list, list] = ([], [])
    outputs: list[Any] = [None, None]
    head_layers: list = []
    for call in layer_calls(model):
        argument_sides = [sides.get(id(argument), frozenset()) for argument in call.inputs]
        depends_on = frozenset().union(*argument_sides)
        for output in call.outputs:
            sides[id(output)] = depends_on
        if len(depends_on) == 1:
            (side,) = depends_on
            if call.layer.weights and all(call.layer is not seen for seen in layers[side]):
                layers[side].append(call.layer)
        else:
            head_layers.append(call.layer)
            for argument, argument_side in zip(call.inputs, argument_sides):
                if len(argument_side) == 1:
                    outputs[next(iter(argument_side))] = argument
    if outputs[0] is None or outputs[1] is None:
        raise ValueError("the model's output does not combine a left and a right branch")
    return Branches(layers=layers, outputs=tuple(outputs), head_layers=head_layers)


def shared_encoder(model: keras.Model) -> SharedEncoder | None:
    """The encoder of `model = head(encoder(left), encoder(right))`: one layer object called on both inputs.

    The first layer (in graph order) that is called directly on the left input and directly on
    the right input, by object identity; what follows it on each side is the head's business.
    None when there is none: an unshared twin, a model that is not functional or has not two
    inputs. The sharing check verifies such a model's branches (`trace_branches`); training
    runs its encoder once on both sides (`siamese.training`).
    """
    inputs = getattr(model, "inputs", None) or ()
    if len(inputs) != 2:
        return None
    calls = layer_calls(model)
    on_input = [[call for call in calls if len(call.inputs) == 1 and call.inputs[0] is tensor] for tensor in inputs]
    for left in on_input[0]:
        right = next((call for call in on_input[1] if call.layer is left.layer), None)
        if right is not None and len(left.outputs) == len(right.outputs) == 1:
            return SharedEncoder(left.layer, (left.outputs[0], right.outputs[0]))
    return None


def _head_variables(branches: Branches) -> dict[int, keras.Variable]:
    branch_ids = branches.variables(0).keys() | branches.variables(1).keys()
    return {
        id(variable): variable
        for layer in branches.head_layers
        for variable in layer.weights
        if id(variable) not in branch_ids
    }


def _count(variables) -> int:
    return int(sum(np.prod(variable.shape) for variable in variables))
