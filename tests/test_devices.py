"""Device planning, and a real multi-replica training run on two logical CPU devices."""

from __future__ import annotations

import json
import sys
import textwrap

import early
import keras
import pytest

from siamese.config import DevicePreference, Precision
from siamese.devices import DeviceError, distribution_scope, plan_devices, visible_gpus

TWO_GPUS = ["/gpu:0", "/gpu:1"]


def test_no_gpu_plans_the_cpu_in_float32():
    plan = plan_devices(DevicePreference.AUTO, Precision.AUTO, gpus=[])
    assert plan.devices == ("/cpu:0",)
    assert plan.dtype_policy == "float32"
    assert plan.strategy == "single-device"
    assert not plan.uses_gpu
    assert plan.backend == keras.backend.backend()


def test_two_gpus_plan_a_mirrored_strategy_in_mixed_precision():
    plan = plan_devices(DevicePreference.AUTO, Precision.AUTO, gpus=TWO_GPUS)
    assert plan.devices == ("/gpu:0", "/gpu:1")
    assert plan.strategy == "MirroredStrategy"
    assert plan.dtype_policy == "mixed_float16"
    assert plan.uses_gpu


def test_one_gpu_plans_one_device():
    plan = plan_devices(DevicePreference.GPU, Precision.AUTO, gpus=["/gpu:0"])
    assert plan.devices == ("/gpu:0",)
    assert plan.strategy == "single-device"


def test_explicit_float32_precision_wins_on_gpus():
    plan = plan_devices(DevicePreference.AUTO, Precision.FLOAT32, gpus=TWO_GPUS)
    assert plan.dtype_policy == "float32"
    assert plan.strategy == "MirroredStrategy"


def test_explicit_mixed_precision_is_kept_on_the_cpu():
    assert plan_devices(DevicePreference.CPU, Precision.MIXED_FLOAT16, gpus=[]).dtype_policy == "mixed_float16"


def test_cpu_preference_ignores_visible_gpus():
    plan = plan_devices(DevicePreference.CPU, Precision.AUTO, gpus=TWO_GPUS)
    assert plan.devices == ("/cpu:0",)
    assert plan.dtype_policy == "float32"


def test_gpu_preference_without_gpus_raises_and_points_to_the_gpu_extra():
    with pytest.raises(DeviceError) as error:
        plan_devices(DevicePreference.GPU, Precision.AUTO, gpus=[])
    message = str(error.value)
    assert "siamese-pipelines[gpu]" in message
    assert "training.devices" in message


def test_plain_strings_mean_the_same_as_the_enums():
    with pytest.raises(DeviceError):
        plan_devices("gpu", "auto", gpus=[])
    assert plan_devices("cpu", "auto", gpus=TWO_GPUS).devices == ("/cpu:0",)
    assert plan_devices("auto", "auto", gpus=TWO_GPUS).dtype_policy == "mixed_float16"
    with pytest.raises(ValueError, match="'tpu'"):
        plan_devices("tpu", "auto", gpus=[])


def test_plan_to_dict_includes_the_strategy():
    plan = plan_devices(DevicePreference.AUTO, Precision.AUTO, gpus=TWO_GPUS)
    assert plan.to_dict() == {
        "backend": keras.backend.backend(),
        "devices": ("/gpu:0", "/gpu:1"),
        "dtype_policy": "mixed_float16",
        "strategy": "MirroredStrategy",
    }


def test_visible_gpus_match_tensorflow():
    import tensorflow as tf

    assert len(visible_gpus()) == len(tf.config.list_physical_devices("GPU"))


def test_one_device_scope_places_variables_on_that_device():
    from siamese.models.text import build_text_model

    plan = plan_devices(DevicePreference.CPU, Precision.AUTO, gpus=[])
    with distribution_scope(plan):
        model = build_text_model(features=8, units=4)
    assert all("CPU:0" in variable.value.device for variable in model.weights)


# Logical devices must be configured before TensorFlow initialises its runtime, hence a fresh process.
MIRRORED_TRAINING = textwrap.dedent(
    """
    import json
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    from siamese.config import SequenceDataConfig, TrainingConfig
    from siamese.data.sequences import generate_sequence_pairs, split_pairs
    from siamese.devices import DevicePlan, distribution_scope
    from siamese.models.text import build_text_model
    from siamese.training import compile_for_training, fit

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    splits = split_pairs(generate_sequence_pairs(SequenceDataConfig(num_pairs=64, timesteps=6, features=8), rng), 0.2, 0.2, rng)
    training = TrainingConfig(epochs=1, batch_size=16)
    plan = DevicePlan(backend="tensorflow", devices=("/cpu:0", "/cpu:1"), dtype_policy="float32")
    with distribution_scope(plan):
        strategy = tf.distribute.get_strategy()
        model = build_text_model(features=8, units=4, head="symmetric")
        compile_for_training(model, training)
        result = fit(model, splits.train, splits.validation, training, verbose=0)
    print(json.dumps({
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "variable": type(model.get_layer("encoder").get_layer("lstm").weights[0].value).__name__,
        "loss": result.history["loss"],
    }))
    """
)


early.register("mirrored_training", lambda: early.command([sys.executable, "-c", MIRRORED_TRAINING]))


@pytest.fixture
def mirrored_training(request) -> early.CommandResult:
    """MIRRORED_TRAINING in a fresh interpreter, started as collection ends (tests/early.py)."""
    return early.result(early.started(request, "mirrored_training"))


def test_mirrored_strategy_trains_on_two_logical_cpus(mirrored_training):
    completed = mirrored_training
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["strategy"] == "MirroredStrategy"
    assert outcome["replicas"] == 2
    assert "Mirrored" in outcome["variable"]  # one copy of each weight per replica, kept in sync
    assert len(outcome["loss"]) == 1 and outcome["loss"][0] > 0
