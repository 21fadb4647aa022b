"""What every model family answers, and the values its answers are made of."""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

import keras
import numpy as np

from siamese.config import Config, ModelKind, Task
from siamese.data.class_batches import ClassBatches
from siamese.data.pairs import SPLIT_NAMES, Pairs, PairSplits
from siamese.data.sequences import PairSet
from siamese.training import task_loss


class ModelFormat(StrEnum):
    """How a family's model is shipped: what the registered model takes and which MLflow flavour holds it."""

    KERAS = "keras"  # MLflow's Keras flavour: float32 tensors `left` and `right` in, one number per pair out
    RAW_TEXT = "raw-text"  # a pyfunc over the `.keras` file: a DataFrame of `left`, `right` strings in


@dataclass(frozen=True)
class SourceFile:
    """The user's file a run's pairs came from: enough to trace the run to its exact data."""

    path: str  # absolute
    content_hash: str  # sha256 of the file's bytes
    total_rows: int
    dropped: dict[str, int]  # reason -> rows dropped as invalid
    columns: tuple[str, str, str]  # the file's left, right and label columns

    @property
    def dropped_rows(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True)
class PreparedSplits:
    """A run's splits as files (what tasks hand each other), their sizes, and where they came from."""

    paths: dict[str, Path]  # train / validation / test -> the family's split files
    sizes: dict[str, int]
    labels: dict[str, str] = field(default_factory=dict)  # split -> its labels in words, for the log
    source: SourceFile | None = None  # a user's pair file, when there is one
    params: dict[str, str] = field(default_factory=dict)  # what the data decided that the config left open (run params)

    MANIFEST: ClassVar[str] = "prepared.json"

    def save_manifest(self, directory: Path) -> None:
        """Describe these splits in `directory/MANIFEST`, their files named relative to it: the folder can move."""
        manifest = dataclasses.asdict(self) | {"paths": {name: str(path.relative_to(directory)) for name, path in self.paths.items()}}
        (directory / self.MANIFEST).write_text(json.dumps(manifest, indent=1))

    @classmethod
    def load_manifest(cls, directory: Path) -> PreparedSplits | None:
        """The splits `save_manifest` described in `directory`; None when there are none."""
        path = directory / cls.MANIFEST
        if not path.exists():
            return None
        manifest = json.loads(path.read_text())
        source = manifest["source"]
        source = None if source is None else SourceFile(**source | {"columns": tuple(source["columns"])})
        paths = {name: directory / relative for name, relative in manifest["paths"].items()}
        return cls(paths, manifest["sizes"], manifest["labels"], source, manifest["params"])


@dataclass(frozen=True)
class BuiltModel:
    """An untrained model, and what building it learned from the training data that the run should record."""

    model: keras.Model
    params: dict[str, object] = field(default_factory=dict)  # MLflow run params, e.g. `model.embeddings_coverage`


class Family(ABC):
    """One kind of pairs, from config to registered model (see `siamese.families`)."""

    kind: ClassVar[ModelKind]
    experiment: ClassVar[str]  # the MLflow experiment its runs go to
    registered_name: ClassVar[str]  # one registered model per input contract: every version takes the same inputs
    model_format: ClassVar[ModelFormat]

    @abstractmethod
    def prepare_splits(self, config: Config, directory: Path) -> PreparedSplits:
        """Generate or load the pairs `config.data` describes, split them without leakage, write them to `directory`.

        Raises:
            ValueError (a subclass naming the file, folder or config key): the data cannot be used.
        """

    @abstractmethod
    def load_split(self, config: Config, path: Path) -> Pairs:
        """Read back a split written by `prepare_splits` (large splits stay on disk)."""

    @abstractmethod
    def build(self, config: Config, train: Pairs, dtype_policy: str) -> keras.Model:
        """The untrained Siamese model: one shared encoder called on `left` and `right`, the head for the task.

        `train` is the training split, for what a model learns from data before training (a vocabulary).
        """

    def build_with_params(self, config: Config, train: Pairs, dtype_policy: str) -> BuiltModel:
        """`build`, with what the run should record about it that only building finds out (none by default).

        Text pairs: how much of the vocabulary the user's word vectors cover, known once the
        vocabulary is adapted and the vectors file read; recording it here reads the file once.
        """
        return BuiltModel(self.build(config, train, dtype_policy))

    @abstractmethod
    def data_name(self, config: Config) -> str:
        """The data in a few words, for run names: a file name, a generator mode."""

    def trainer(self, config: Config, model: keras.Model, train: Pairs) -> tuple[keras.Model, Pairs | ClassBatches]:
        """The model training fits and what it is fitted on: `model` and `train`, or what only training adds.

        A wrapper shares every variable with `model`, so training it trains `model`, which is
        what is saved and served (class folders: `siamese.training.AllPairsTrainer` on
        `ClassBatches`; other real images: `siamese.models.vision.with_training_augmentation`).
        """
        return model, train

    def search_space(self, config: Config) -> dict[str, dict[str, object]]:
        """What `siamese tune` varies when the config has no `[tune]` table: a `[tune]` table of this family.

        Every family's runs turn on the learning rate and the batch size; the ranges hold the
        defaults (RMSprop at 1e-2, batch 256), so that the defaults are among what a sweep can find.
        Families add what their models are built from.
        """
        return {
            "training.learning_rate": {"low": 1e-3, "high": 3e-2, "log": True},
            "training.batch_size": {"choices": [64, 128, 256, 512]},
        }

    def registered_model_name(self, config: Config) -> str:
        """The registered model a run's version joins: `registered_name`, unless the config changes the contract."""
        return self.registered_name

    def loss(self, config: Config) -> str:
        """The loss the model trains with (and the sharing check's one optimizer step takes)."""
        return task_loss(config.task)

    def baselines(self, config: Config, train: Pairs, validation: Pairs, test: Pairs) -> dict[str, float]:
        """Simple methods scored on the same test split; bare metric names, logged as `baseline/...`.

        Fitted on the training split only; a decision threshold may be chosen on `validation`, as
        the model's is. Keys ending in the gate's suffixes (`siamese.gate.BASELINE_SUFFIXES`) are
        bars a first model must clear, so only values on the model's own metric may end in them.
        """
        return {}

    def extra_test_metrics(self, config: Config, model: keras.Model, test: Pairs) -> dict[str, float]:
        """Metrics of the trained model on the test split beyond its task's (`report_test_split`); bare names.

        For what a family's data can ask and other families' cannot (class folders: one-shot
        accuracy); they are logged as `test/...` beside the task's metrics.
        """
        return {}

    def example_pairs(self, test: Pairs) -> PairSet | None:
        """Test pairs drawn with their predictions for reviewers, where pictures say something (images)."""
        return None

    def write_splits(
        self,
        splits: PairSplits[Pairs],
        directory: Path,
        task: Task,
        source: SourceFile | None = None,
        params: dict[str, str] | None = None,
    ) -> PreparedSplits:
        """Save each split in its container's format (shards already on disk stay where they are)."""
        paths, sizes, labels = {}, {}, {}
        for name in SPLIT_NAMES:
            pairs = getattr(splits, name)
            paths[name] = pairs.save(directory / f"{name}{pairs.suffix}")
            sizes[name] = len(pairs)
            labels[name] = describe_labels(pairs.labels, task)
        return PreparedSplits(paths, sizes, labels, source, params or {})


def describe_labels(labels: np.ndarray, task: Task) -> str:
    """A split's labels in a few words: positives, or the range of the targets."""
    if task is Task.REGRESSION:
        return f"targets {labels.min():.3g}..{labels.max():.3g} (mean {labels.mean():.3g})" if len(labels) else "no targets"
    return f"{int(np.count_nonzero(labels == 1))} positive"
