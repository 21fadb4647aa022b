"""Where training runs: GPUs when visible, else the CPU, under a matching distribution strategy.

The plan is a small value (device names, strategy kind, dtype policy) so it can be decided once,
logged, and handed to the builder (dtype policy) and to training (strategy scope).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Iterator

import keras

from siamese.config import DevicePreference, Precision

MIXED_PRECISION_POLICY = "mixed_float16"


class DeviceError(RuntimeError):
    """The requested devices are not available."""


@dataclass(frozen=True)
class DevicePlan:
    backend: str  # the Keras backend: tensorflow, jax or torch
    devices: tuple[str, ...]  # logical devices that train, e.g. ("/gpu:0", "/gpu:1") or ("/cpu:0",)
    dtype_policy: str  # float32, or mixed_float16 on GPUs

    @property
    def uses_gpu(self) -> bool:
        return any("gpu" in device.lower() for device in self.devices)

    @property
    def strategy(self) -> str:
        """How the TensorFlow backend trains: mirrored over several devices, else plain placement."""
        return "MirroredStrategy" if len(self.devices) > 1 else "single-device"

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"strategy": self.strategy}


def plan_devices(
    preference: DevicePreference | str, precision: Precision | str, gpus: list[str] | None = None
) -> DevicePlan:
    """Choose devices and dtype policy for training.

    Args:
        preference: `auto` takes every visible GPU, else the CPU; `cpu` forces the CPU; `gpu`
            requires at least one GPU.
        precision: `auto` is mixed float16 on GPUs and float32 on the CPU.
        gpus: the visible GPUs; detected from the Keras backend when None.

    Raises:
        DeviceError: `gpu` was requested and none is visible.
    """
    # Accept the strings too: the identity checks below would silently skip a plain "gpu".
    preference, precision = DevicePreference(preference), Precision(precision)
    gpus = visible_gpus() if gpus is None else gpus
    if preference is DevicePreference.GPU and not gpus:
        raise DeviceError(
            f"training.devices is 'gpu' but the {keras.backend.backend()} backend sees no GPU. "
            "Install the CUDA build (pip install 'siamese-pipelines[gpu]') and check nvidia-smi, "
            "or set training.devices = 'auto' to fall back to the CPU."
        )
    devices = tuple(gpus) if gpus and preference is not DevicePreference.CPU else ("/cpu:0",)
    uses_gpu = devices != ("/cpu:0",)
    if precision is Precision.AUTO:
        policy = MIXED_PRECISION_POLICY if uses_gpu else "float32"
    else:
        policy = precision.value
    return DevicePlan(backend=keras.backend.backend(), devices=devices, dtype_policy=policy)


def visible_gpus() -> list[str]:
    """Logical GPU device names the current Keras backend can use, e.g. ["/gpu:0"]."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        physical = tf.config.list_physical_devices("GPU")
        for gpu in physical:
            # Take memory as needed rather than all of it up front, so other jobs can share the GPU.
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # TensorFlow already initialised the GPU; growth is fixed by then
                pass
        return [f"/gpu:{index}" for index in range(len(physical))]
    if backend == "jax":
        import jax

        return [f"/gpu:{device.id}" for device in jax.devices() if device.platform == "gpu"]
    if backend == "torch":
        import torch

        return [f"/gpu:{index}" for index in range(torch.cuda.device_count())]
    return []


@contextlib.contextmanager
def distribution_scope(plan: DevicePlan) -> Iterator[None]:
    """Build, load and compile models inside this scope so their variables live on `plan.devices`.

    TensorFlow: `MirroredStrategy` over several devices (one replica per GPU, gradients
    all-reduced); one device is a plain `tf.device` placement, since `OneDeviceStrategy` measured
    2-3x slower per step on a CPU (BENCHMARKS.md). Other backends place arrays on their default
    device (the first GPU when there is one).
    """
    if plan.backend != "tensorflow":
        yield
        return
    import tensorflow as tf

    if len(plan.devices) > 1:
        with tf.distribute.MirroredStrategy(devices=list(plan.devices)).scope():
            yield
    else:
        with tf.device(plan.devices[0]):
            yield
