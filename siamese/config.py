"""Run configuration: one frozen dataclass per concern, validated on construction.

Everything a run depends on lives here, so that logging `Config.to_params()` once records the
whole experiment. Values are checked up front: a bad size or an unknown mode stops the run before
any data is generated or anything is logged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Mapping, TypeVar

from siamese.data.pairs import check_fractions

MIN_IMAGE_SIZE = 16  # the compact backbone halves the image three times
XCEPTION_MIN_IMAGE_SIZE = 71  # keras.applications.Xception refuses smaller inputs

# Maxima no legitimate run reaches, so that a typo or a runaway script is refused before any work
# instead of writing terabytes or training for ever (README, "Configuration").
MAX_SEED = 2**32 - 1  # numpy's seeding, which keras.utils.set_random_seed calls, takes 0 <= seed < 2**32
MAX_EPOCHS = 10_000  # a maximum anyway: early stopping ends a run long before this
MAX_PAIRS = 10**8  # 100 million pairs: 2 TB of default generated sequences; the free disk is checked too (`check_free_disk`)
MAX_FEATURES = 65_536  # features per generated timestep (the reference has 128)
MAX_VOCABULARY_SIZE = 10_000_000  # the largest published word-vector files hold a few million words
MAX_RANDOM_NEGATIVES = 16  # random pairs per labelled pair: more would drown the file's own pairs
MAX_IMAGE_SIZE = 1024  # the reference Xception input is 250; a 1024x1024 RGB pair is 6 MiB of pixels
DEFAULT_STEREO_PAIRS = 2000  # generated stereo pairs when data.num_pairs is unset


EnumT = TypeVar("EnumT", bound=StrEnum)


class ConfigError(ValueError):
    """A configuration value, key or file that cannot be used; the message names it."""


class SearchSpaceError(ConfigError):
    """A sweep's `[tune]` table that cannot be searched (`siamese.tuning`); the message names keys as the table spells them."""


class ModelKind(StrEnum):
    """The model family: each has one recipe module in `siamese.families`."""

    SEQUENCES = "sequences"  # generated float sequences, the reference shared LSTM(32)
    TEXT = "text"  # labelled text pairs from a file: raw strings in, tokenised inside the model
    VISION = "vision"  # one CNN backbone over a left and a right camera image


class DataMode(StrEnum):
    PARAPHRASE = "paraphrase"  # learnable: positives are perturbed copies of their left side
    RANDOM = "random"  # the original script: random sequences and labels, nothing to learn


class Head(StrEnum):
    CONCAT = "concat"  # the reference model: concatenate both encodings, Dense(1)
    SYMMETRIC = "symmetric"  # [|a-b|, a*b] -> Dense(1): score(a, b) == score(b, a)
    MONOTONE = "monotone"  # [-|a-b|, a*b] -> Dense(1) with weights >= 0: never scores higher for a difference
    MANHATTAN = "manhattan"  # MaLSTM: exp(-||a-b||_1), no weights
    COSINE = "cosine"  # cos(a, b) -> Dense(1): a learned scale and offset


class TextEncoder(StrEnum):
    """The shared encoder of a text pair model (BENCHMARKS.md, "Model quality": what was measured)."""

    LEXICAL = "lexical"  # character and word n-gram bags: the default for pair files
    BILSTM = "bilstm"  # word embeddings -> BiLSTM -> max pooling, beside a character n-gram projection
    LSTM = "lstm"  # the reference: word embeddings -> LSTM(units)


class Loss(StrEnum):
    BINARY_CROSSENTROPY = "binary_crossentropy"
    CONTRASTIVE = "contrastive"  # Hadsell et al. 2006 on the distance 1 - score, with a margin


class ImageSource(StrEnum):
    STEREO = "stereo"  # generated stereo pairs of textured scenes
    FOLDER = "folder"  # root/[<group>/]<class>/<image>: same-class and different-class pairs drawn with the seed
    CSV = "csv"  # a file of left_path,right_path,label rows


class Task(StrEnum):
    SIMILARITY = "similarity"  # 0/1 label (same scene, same class): sigmoid score, AUC
    REGRESSION = "regression"  # a number per pair (disparity in pixels, a CSV target, a graded text score): MAE, RMSE


class SplitBy(StrEnum):
    AUTO = "auto"  # class when the held-out splits get MIN_HELD_OUT_CLASSES classes each, else image
    CLASS = "class"  # validation/test classes never seen in training: verification of new identities
    IMAGE = "image"  # every class in every split, each image in one split only
    GROUP = "group"  # whole top-level folders (alphabets of root/<alphabet>/<character>) per split


class Backbone(StrEnum):
    COMPACT = "compact"  # a small CNN that trains in seconds on a CPU (average pooling: keeps small disparities)
    CONV4 = "conv4"  # four conv-max-pool stages, the few-shot literature's Conv-4: class folders of real images
    XCEPTION = "xception"  # the reference: keras.applications.Xception(weights=None, include_top=False)


class VisionHead(StrEnum):
    CONCAT = "concat"  # the reference: feature maps concatenated along channels, pooled, Dense(1)
    FUSION = "fusion"  # concatenated maps -> convolution that compares the views at each location
    SYMMETRIC = "symmetric"  # pooled features of each view -> [|a-b|, a*b] -> Dense(1)
    L1 = "l1"  # Koch et al. 2015: pooled features of each view -> |a-b| -> Dense(1), a weighted L1 distance


class Pooling(StrEnum):
    AVG = "avg"
    MAX = "max"
    FLATTEN = "flatten"  # no pooling: every location's features, in place


class Precision(StrEnum):
    AUTO = "auto"  # mixed_float16 on a GPU, float32 on a CPU
    FLOAT32 = "float32"
    MIXED_FLOAT16 = "mixed_float16"


class DevicePreference(StrEnum):
    AUTO = "auto"  # every visible GPU, else the CPU
    CPU = "cpu"
    GPU = "gpu"  # fail rather than silently train on the CPU


@dataclass(frozen=True)
class SequenceDataConfig:
    mode: DataMode = DataMode.PARAPHRASE
    num_pairs: int = 4000  # at most MAX_PAIRS, and what the work directory's free disk holds
    timesteps: int = 20  # the longest sequence; shorter ones are zero-padded at the end
    features: int = 128  # the reference input is (None, 128); at most MAX_FEATURES
    noise: float = 0.5  # std of the noise added to a positive pair's right side
    validation_fraction: float = 0.2
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        _coerce_enum(self, "mode", DataMode, "data")
        _require_int(self, "num_pairs", "data", minimum=10, maximum=MAX_PAIRS)
        _require_int(self, "timesteps", "data", minimum=4)
        _require_int(self, "features", "data", minimum=1, maximum=MAX_FEATURES)
        _require_float(self, "noise", "data", minimum=0.0)
        _require_fractions(self)

    @property
    def task(self) -> Task:
        return Task.SIMILARITY

    @property
    def generated_bytes(self) -> int:
        """Disk the generated splits take: float32 left and right sequences and a float32 label per pair."""
        return self.num_pairs * (2 * 4 * self.timesteps * self.features + 4)


class _BlankMeansAuto(StrEnum):
    """A StrEnum whose blank value means its `auto` member: `key = ""` in a config reads as "decide"."""

    @classmethod
    def _missing_(cls, value: object) -> StrEnum | None:
        return cls("auto") if value == "" else None


class TableFormat(_BlankMeansAuto):
    """How a pair file is parsed (`data.format`), when its suffix does not say or says wrong."""

    AUTO = "auto"  # from the suffix; a `.txt` file is tab-separated if its header has a tab, else CSV
    CSV = "csv"
    TSV = "tsv"
    PARQUET = "parquet"


class Quoting(_BlankMeansAuto):
    """What quote characters in a CSV/TSV pair file mean (`data.quoting`)."""

    AUTO = "auto"  # per file: CSV quoting if every record parses that way, else quotes are text
    CSV = "csv"  # standard quoting: a quoted field may hold separators and newlines; "" is one quote
    NONE = "none"  # quotes are part of the text (MRPC): every line is one row, split at each separator


class Augment(_BlankMeansAuto):
    """Whether training draws random transforms of each image (`data.augment`)."""

    AUTO = "auto"  # on for real images (folder, csv); off for generated stereo pairs (see ImageDataConfig)
    ON = "on"
    OFF = "off"


class TrainingPairs(_BlankMeansAuto):
    """Which pairs training scores (`data.training_pairs`); validation and test always score drawn pairs."""

    AUTO = "auto"  # in_batch for class folders, drawn for everything else
    DRAWN = "drawn"  # the training split's drawn pairs, reshuffled each epoch
    IN_BATCH = "in_batch"  # batches of a few classes' images, every pair among them scored (class folders only)


@dataclass(frozen=True)
class TextFileDataConfig:
    """Labelled text pairs from a CSV, TSV or Parquet file (a `path` in `[data]` selects this)."""

    path: str = ""  # required: checked below, so that a missing path gets the message, not a TypeError
    left_column: str = ""  # "" detects common layouts: question1/question2, left/right, sentence1/sentence2, ...
    right_column: str = ""
    label_column: str = ""  # is_duplicate, label, score, ...
    threshold: float | None = None  # graded scores: label = 1 when score >= threshold
    task: Task = Task.SIMILARITY  # regression: the label column is a graded score (0-5, 1-5, ...) to predict as a number
    drop_invalid_rows: bool = False  # drop (and count) rows that fail validation instead of stopping
    format: TableFormat = TableFormat.AUTO  # "" or auto: from the suffix; csv, tsv or parquet to override it
    quoting: Quoting = Quoting.AUTO  # "" or auto: detected per file; csv or none to override it
    split_column: str = ""  # a column naming each row's split (train/dev/test, ...): a published split, not a random one
    validation_fraction: float = 0.2  # with split_column: carved from train only when the file has no validation rows
    test_fraction: float = 0.2  # unused with split_column

    def __post_init__(self) -> None:
        for name in ("path", "left_column", "right_column", "label_column", "split_column"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"data.{name} must be a string, got {getattr(self, name)!r}")
        if not self.path:
            raise ConfigError("data.path must name a CSV, TSV or Parquet file of text pairs")
        if self.threshold is not None:
            if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not _is_finite(self.threshold):
                raise ConfigError(f"data.threshold must be a number (the score at which a pair counts as similar), got {self.threshold!r}")
            object.__setattr__(self, "threshold", float(self.threshold))
        if not isinstance(self.drop_invalid_rows, bool):
            raise ConfigError(f"data.drop_invalid_rows must be true or false, got {self.drop_invalid_rows!r}")
        _coerce_enum(self, "format", TableFormat, "data")
        _coerce_enum(self, "quoting", Quoting, "data")
        _coerce_enum(self, "task", Task, "data")
        if self.task is Task.REGRESSION and self.threshold is not None:
            raise ConfigError(
                f"data.threshold ({self.threshold:g}) turns graded scores into 0/1 labels, and data.task 'regression' "
                "predicts the scores themselves: set one or the other"
            )
        _require_fractions(self)

    @property
    def generated_bytes(self) -> int:
        """Nothing is generated: the splits are a copy of the user's file, no larger than it."""
        return 0


@dataclass(frozen=True)
class TextModelConfig:
    units: int = 32  # LSTM units of the shared encoder
    head: Head = Head.SYMMETRIC  # the concat head cannot express similarity (see README)
    # Text from a file is tokenised inside the model; generated sequences ignore these three.
    vocabulary_size: int = 20_000  # most frequent training-split tokens kept, padding and unknown included; at most MAX_VOCABULARY_SIZE
    sequence_length: int = 40  # tokens per text; longer texts are cut, shorter ones padded at the end
    embedding_dim: int = 128  # the reference LSTM's input width

    def __post_init__(self) -> None:
        _require_int(self, "units", "model", minimum=1)
        _coerce_enum(self, "head", Head, "model")
        _require_int(self, "vocabulary_size", "model", minimum=3, maximum=MAX_VOCABULARY_SIZE)
        _require_int(self, "sequence_length", "model", minimum=1)
        _require_int(self, "embedding_dim", "model", minimum=1)


@dataclass(frozen=True)
class TextPairModelConfig(TextModelConfig):
    """`[model]` of a text pair file run: the reference fields plus the encoder, loss and word vectors.

    The defaults were chosen by measurement on real pair data (BENCHMARKS.md, "Model quality"):
    the lexical encoder with the symmetric head beats every logged baseline there, where the
    reference LSTM does not.
    """

    encoder: TextEncoder = TextEncoder.LEXICAL
    loss: Loss = Loss.BINARY_CROSSENTROPY
    margin: float = 0.5  # contrastive loss: dissimilar pairs are pushed to a distance (1 - score) of at least this
    dropout: float = 0.3  # learned encoders (bilstm, lstm): on embeddings and on the encoding
    embeddings: str = ""  # a GloVe / word2vec / fastText text file of word vectors; "" learns them from scratch
    fine_tune_embeddings: bool = False  # with `embeddings`: train the vectors too (true) or keep them frozen
    # Pairs of two texts drawn at random, labelled unrelated, per labelled training pair (drawn anew
    # every batch; `siamese.data.text_pairs.WithRandomNegatives`): 0 trains on the file's pairs alone.
    random_negatives: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _coerce_enum(self, "encoder", TextEncoder, "model")
        _coerce_enum(self, "loss", Loss, "model")
        _require_float(self, "margin", "model", minimum=0.0, below=1.0, exclusive_minimum=True)
        _require_float(self, "dropout", "model", minimum=0.0, below=1.0)
        _require_float(self, "random_negatives", "model", minimum=0.0, below=MAX_RANDOM_NEGATIVES)
        if not isinstance(self.embeddings, str):
            raise ConfigError(f"model.embeddings must be the path of a word vectors file (or empty), got {self.embeddings!r}")
        if not isinstance(self.fine_tune_embeddings, bool):
            raise ConfigError(f"model.fine_tune_embeddings must be true or false, got {self.fine_tune_embeddings!r}")
        if self.embeddings and self.encoder is TextEncoder.LEXICAL:
            raise ConfigError("model.embeddings needs a learned encoder: set model.encoder to 'bilstm' or 'lstm'")
        if self.loss is Loss.CONTRASTIVE and self.head is Head.CONCAT:
            raise ConfigError("model.loss 'contrastive' needs a symmetric head (symmetric, monotone, manhattan or cosine), not 'concat'")


# Each augmentation strength must be below its limit: a shift of half the side can push the
# content out of view, half a turn either way is every orientation already, and a zoom or contrast
# factor of 1 can shrink an image to nothing or flatten it to its mean.
AUGMENTATION_LIMITS = {"translation": 0.5, "rotation": 0.5, "zoom": 1.0, "contrast": 1.0}


@dataclass(frozen=True)
class Augmentation:
    """How strongly training transforms each image, drawn anew per image and per side; 0 leaves a transform out.

    The defaults are mild, generic ones (photos, scans and drawings alike): they vary framing
    and exposure as a second photo of the same thing would, without changing what it shows.
    """

    translation: float = 0.1  # shift by up to this share of the height and of the width
    rotation: float = 0.03  # rotate by up to this share of a full turn (0.03: about 11 degrees)
    zoom: float = 0.1  # zoom in or out by up to this share of the side
    contrast: float = 0.2  # scale each image's contrast by a factor in [1 - contrast, 1 + contrast]

    def __post_init__(self) -> None:
        _require_augmentation(self, "")


@dataclass(frozen=True)
class ImageDataConfig:
    source: ImageSource = ImageSource.STEREO
    path: str = ""  # the class folder (source folder) or the CSV file (source csv)
    task: Task = Task.SIMILARITY
    # Pairs to generate (stereo; None: 2,000) or to draw (folder; None: 5 per image, 2,000 to
    # 20,000, `siamese.data.image_pairs.default_pair_count`); a CSV gives its rows. At most
    # MAX_PAIRS, and generated pairs at most what the work directory's free disk holds.
    num_pairs: int | None = None
    image_size: int = 48  # images are resized to image_size x image_size; Xception needs >= 71; at most MAX_IMAGE_SIZE
    channels: int = 3  # 3 for RGB, 1 for grayscale: files are converted on reading
    noise: float = 0.02  # sensor noise of generated images, as a share of the pixel range
    split_by: SplitBy = SplitBy.AUTO  # folder source only
    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    # Random transforms in training only (see `augmentation`); the four strengths are `Augmentation`'s.
    augment: Augment = Augment.AUTO
    translation: float = Augmentation.translation
    rotation: float = Augmentation.rotation
    zoom: float = Augmentation.zoom
    contrast: float = Augmentation.contrast
    training_pairs: TrainingPairs = TrainingPairs.AUTO  # see `in_batch_training`

    def __post_init__(self) -> None:
        _coerce_enum(self, "source", ImageSource, "data")
        _coerce_enum(self, "task", Task, "data")
        _coerce_enum(self, "split_by", SplitBy, "data")
        _coerce_enum(self, "augment", Augment, "data")
        _coerce_enum(self, "training_pairs", TrainingPairs, "data")
        _require_augmentation(self, "data")
        if not isinstance(self.path, str):
            raise ConfigError(f"data.path must be a string, got {self.path!r}")
        if self.num_pairs is not None:
            _require_int(self, "num_pairs", "data", minimum=10, maximum=MAX_PAIRS)
        _require_int(self, "image_size", "data", minimum=MIN_IMAGE_SIZE, maximum=MAX_IMAGE_SIZE)
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        _require_float(self, "noise", "data", minimum=0.0)
        _require_fractions(self)
        if self.source is not ImageSource.STEREO and not self.path:
            raise ConfigError(f"data.path is required when data.source is '{self.source}': the image folder or CSV file")
        if self.source is ImageSource.FOLDER and self.task is not Task.SIMILARITY:
            raise ConfigError(
                "data.task must be 'similarity' when data.source is 'folder': class folders give "
                f"same/different pairs, not numeric targets; got '{self.task}'"
            )
        if self.training_pairs is TrainingPairs.IN_BATCH and self.source is not ImageSource.FOLDER:
            raise ConfigError(
                f"data.training_pairs 'in_batch' needs the classes of a class folder (data.source 'folder'), "
                f"not '{self.source}': set data.training_pairs to 'drawn' or 'auto'"
            )

    @property
    def augmentation(self) -> Augmentation | None:
        """The training augmentation `augment` asks for; None when it is off.

        `auto` is on for real images (folder, csv), where a second photo of the same thing is
        framed and exposed differently, and off for generated stereo pairs: shifting or scaling
        the two views independently changes the disparity the model has to measure (and the
        target of a regression), and the generator already varies the scenes. `on` applies it
        to stereo pairs too, for whoever wants exactly that.
        """
        if self.augment is Augment.OFF or (self.augment is Augment.AUTO and self.source is ImageSource.STEREO):
            return None
        return Augmentation(translation=self.translation, rotation=self.rotation, zoom=self.zoom, contrast=self.contrast)

    @property
    def generated_bytes(self) -> int:
        """Disk generated stereo splits take (uint8 left and right images, a float32 label per pair); files are written as paths."""
        if self.source is not ImageSource.STEREO:
            return 0
        return (self.num_pairs or DEFAULT_STEREO_PAIRS) * (2 * self.image_size**2 * self.channels + 4)

    @property
    def in_batch_training(self) -> bool:
        """Whether training scores every pair within class-balanced batches (`siamese.data.class_batches`).

        `auto` does for class folders: for the encoder work of a drawn pair, a batch of 128
        images of 32 classes scores 63 pairs per image instead of one. On omniglot_small2 split
        by character, 20-way one-shot accuracy rose from 0.79 to 0.87 (BENCHMARKS.md, "Image
        verification"). Pair CSVs and stereo pairs have no classes to batch by.
        """
        if self.training_pairs is TrainingPairs.AUTO:
            return self.source is ImageSource.FOLDER
        return self.training_pairs is TrainingPairs.IN_BATCH


@dataclass(frozen=True)
class VisionModelConfig:
    """The vision model; what is left unset (None or "") takes the data source's recipe.

    `Config` fills it in from `VISION_RECIPES`, so a run's params show what was built.
    """

    backbone: Backbone | None = None  # xception is the reference; compact and conv4 train on a CPU
    head: VisionHead | None = None  # concat cannot compare the views (see README)
    pooling: Pooling | None = None
    filters: int | None = None  # first-stage filters of the compact and conv4 backbones (doubling per stage)
    loss: Loss = Loss.BINARY_CROSSENTROPY  # similarity only; contrastive needs a symmetric head (symmetric, l1)
    margin: float = 0.5  # contrastive loss: different-class pairs are pushed to a distance (1 - score) of at least this

    def __post_init__(self) -> None:
        for name, enum in (("backbone", Backbone), ("head", VisionHead), ("pooling", Pooling)):
            if getattr(self, name) in (None, ""):
                object.__setattr__(self, name, None)
            else:
                _coerce_enum(self, name, enum, "model")
        if self.filters is not None:
            _require_int(self, "filters", "model", minimum=1)
        _coerce_enum(self, "loss", Loss, "model")
        _require_float(self, "margin", "model", minimum=0.0, below=1.0, exclusive_minimum=True)

    def for_source(self, source: ImageSource) -> VisionModelConfig:
        """This config with what is unset taken from the recipe for `source` (`VISION_RECIPES`)."""
        recipe = VISION_RECIPES[source]
        return dataclasses.replace(
            self, **{name: value for name, value in dataclasses.asdict(recipe).items() if getattr(self, name) is None}
        )


# Epochs without a better validation metric before training stops (`TrainingConfig.patience`).
PATIENCE = 3
# Real images of classes never seen in training: validation AUC on new classes moves in small,
# noisy steps (augmentation, a high learning rate) while the model still improves; on
# omniglot_small2 patience 6 stopped at epoch 20 instead of 9, 20-way one-shot 0.82 instead of 0.70.
REAL_IMAGE_PATIENCE = 6


@dataclass(frozen=True)
class TrainingConfig:
    """How the model is fitted. Training stops by itself: `epochs` is a maximum (see `siamese.training.fit`)."""

    epochs: int = 30  # a maximum (itself at most MAX_EPOCHS): early stopping (patience) ends training when validation stops improving
    # Tuned for throughput (bench/throughput.py): on a CPU a pair costs about 40% less in a batch
    # of 256 than of 64 (fuller steps, fewer of them), and at 10x RMSprop's default rate test AUC
    # on the generated text pairs is no worse than at batch 64 (BENCHMARKS.md, "Training
    # throughput"). The original script's settings are batch 64 and 1e-3.
    batch_size: int = 256
    learning_rate: float = 1e-2
    precision: Precision = Precision.AUTO
    devices: DevicePreference = DevicePreference.AUTO
    # Epochs without a better validation metric before training stops; 0 never stops early. The
    # best epoch's weights are kept either way. Unset (None): `PATIENCE`, or `REAL_IMAGE_PATIENCE`
    # for image folders and pair CSVs, filled in by `Config`.
    patience: int | None = None
    # Epochs without a better validation metric before the learning rate is multiplied by
    # reduce_lr_factor; below `patience`, so that a lower rate gets an epoch to improve before
    # training stops. Off (0) by default: at 2, on the 2,000 sample question pairs (20 epochs at
    # 0.002, tests/test_text_pairs_learning.py) two noisy epochs halved the rate while the model
    # was still improving, and test AUC fell from 0.93 to 0.89; on the default run it changed nothing.
    reduce_lr_patience: int = 0
    reduce_lr_factor: float = 0.5

    def __post_init__(self) -> None:
        _require_int(self, "epochs", "training", minimum=1, maximum=MAX_EPOCHS)
        _require_int(self, "batch_size", "training", minimum=1)
        _require_float(self, "learning_rate", "training", minimum=0.0, exclusive_minimum=True)
        _coerce_enum(self, "precision", Precision, "training")
        _coerce_enum(self, "devices", DevicePreference, "training")
        if self.patience is not None:
            _require_int(self, "patience", "training", minimum=0)
        _require_int(self, "reduce_lr_patience", "training", minimum=0)
        _require_float(self, "reduce_lr_factor", "training", minimum=0.0, exclusive_minimum=True, below=1.0)


GATE_METRICS = {  # what the registry gate may compare models on, per task; the first is the default
    Task.SIMILARITY: ("roc_auc", "accuracy", "log_loss"),
    Task.REGRESSION: ("mae", "rmse", "pearson"),  # pearson: graded similarity is usually judged by correlation
}
DEFAULT_QUALITY_BARS = {"roc_auc": 0.6, "accuracy": 0.6}  # a first model must reach these to become champion
# A first model judged on fewer test pairs is not promoted: a bootstrap of a handful of pairs
# repeats the same few pairs (4 perfectly ranked pairs give an AUC "interval" of exactly 1..1).
MIN_JUDGED_PAIRS = 50


@dataclass(frozen=True)
class GateConfig:
    """How a new model version (challenger) may replace the champion of its registered model."""

    metric: str = ""  # "" = the task's headline metric: roc_auc (similarity) or mae (regression)
    min_improvement: float = 0.0  # the bootstrap CI's lower bound must exceed this
    min_quality: float | None = None  # a first model's bar (a maximum for errors); None = DEFAULT_QUALITY_BARS or none
    min_test_pairs: int = MIN_JUDGED_PAIRS  # a first model judged on fewer is not promoted; 0 judges any number
    bootstrap_samples: int = 1000
    confidence: float = 0.95

    def __post_init__(self) -> None:
        known = sorted({name for names in GATE_METRICS.values() for name in names})
        if self.metric not in ("", *known):
            raise ConfigError(f"gate.metric must be one of {', '.join(known)} (or empty for the task's default); got {self.metric!r}")
        _require_float(self, "min_improvement", "gate", minimum=0.0)
        if self.min_quality is not None:
            _require_float(self, "min_quality", "gate", minimum=0.0)
        _require_int(self, "min_test_pairs", "gate", minimum=0)
        _require_int(self, "bootstrap_samples", "gate", minimum=100)
        _require_float(self, "confidence", "gate", minimum=0.5, below=1.0)

    def metric_for(self, task: Task) -> str:
        return self.metric or GATE_METRICS[task][0]

    def quality_bar(self, task: Task) -> float | None:
        return self.min_quality if self.min_quality is not None else DEFAULT_QUALITY_BARS.get(self.metric_for(task))


@dataclass(frozen=True)
class Config:
    """The whole run. `data` and `model` take the kind's sections (`KIND_SECTIONS`); None means its defaults."""

    kind: ModelKind = ModelKind.SEQUENCES
    seed: int = 0  # seeds data generation, weight initialisation and shuffling; 0 to MAX_SEED
    data: SequenceDataConfig | TextFileDataConfig | ImageDataConfig = None  # type: ignore[assignment]
    model: TextModelConfig | TextPairModelConfig | VisionModelConfig = None  # type: ignore[assignment]
    training: TrainingConfig = field(default_factory=TrainingConfig)
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        _coerce_enum(self, "kind", ModelKind, "")
        _require_int(self, "seed", "", minimum=0, maximum=MAX_SEED)
        for section, cls in KIND_SECTIONS[self.kind].items():
            value = getattr(self, section)
            if value is None:
                object.__setattr__(self, section, cls())
            elif not isinstance(value, cls):
                kinds = [str(kind) for kind, classes in KIND_SECTIONS.items() if isinstance(value, classes[section])]
                hint = f": a {type(value).__name__} belongs to kind {' or '.join(kinds)}" if kinds else ""
                raise ConfigError(f"[{section}] of a {self.kind} run must be a {cls.__name__}, got {type(value).__name__}{hint}")
        if self.kind is ModelKind.VISION:
            object.__setattr__(self, "model", self.model.for_source(self.data.source))
            symmetric = self.model.head in (VisionHead.SYMMETRIC, VisionHead.L1)
            if self.model.loss is Loss.CONTRASTIVE and (self.data.task is not Task.SIMILARITY or not symmetric):
                raise ConfigError(
                    f"model.loss 'contrastive' needs data.task 'similarity' and a symmetric head (symmetric or l1); "
                    f"got task '{self.data.task}' and head '{self.model.head}'"
                )
        if self.training.patience is None:
            real_images = self.kind is ModelKind.VISION and self.data.source is not ImageSource.STEREO
            patience = REAL_IMAGE_PATIENCE if real_images else PATIENCE
            object.__setattr__(self, "training", dataclasses.replace(self.training, patience=patience))
        if (
            self.kind is ModelKind.VISION
            and self.model.backbone is Backbone.XCEPTION
            and self.data.image_size < XCEPTION_MIN_IMAGE_SIZE
        ):
            raise ConfigError(
                f"model.backbone 'xception' needs data.image_size >= {XCEPTION_MIN_IMAGE_SIZE}, "
                f"got {self.data.image_size}: raise the image size or use backbone 'compact'"
            )

        if self.gate.metric and self.gate.metric not in GATE_METRICS[self.task]:
            raise ConfigError(
                f"gate.metric {self.gate.metric!r} does not fit a {self.task} model; use one of {', '.join(GATE_METRICS[self.task])}"
            )

    @property
    def task(self) -> Task:
        """What the model predicts: a similarity score, or a number (vision regression, graded text pairs)."""
        return self.data.task

    def to_params(self) -> dict[str, str]:
        """Flatten to `section.field -> value` strings, the shape MLflow params take."""
        params = {"kind": str(self.kind), "seed": str(self.seed)}
        for section in _SECTION_NAMES:
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                params[f"{section}.{key}"] = str(value)
        return params

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (strings for enums), the shape of a TOML config file."""
        return {"kind": str(self.kind), "seed": self.seed} | {
            # None (a default that depends on the data, e.g. data.num_pairs) is left out: TOML has no null.
            section: {key: _plain(value) for key, value in dataclasses.asdict(getattr(self, section)).items() if value is not None}
            for section in _SECTION_NAMES
        }


# The `[data]` and `[model]` section classes of each kind (the family modules in `siamese.families`
# read them); `[training]` and `[gate]` are the same for every kind.
KIND_SECTIONS: dict[ModelKind, dict[str, type]] = {
    ModelKind.SEQUENCES: {"data": SequenceDataConfig, "model": TextModelConfig},
    ModelKind.TEXT: {"data": TextFileDataConfig, "model": TextPairModelConfig},
    ModelKind.VISION: {"data": ImageDataConfig, "model": VisionModelConfig},
}
_SECTION_NAMES = ("data", "model", "training", "gate")
TUNE_TABLE = "tune"  # a sweep's search space (`siamese.tuning`): allowed in any config file, read only by `siamese tune`


def config_from_dict(values: Mapping[str, Any], source: str = "config") -> Config:
    """Build a validated `Config` from a nested mapping (the shape of a TOML file).

    `kind` decides which sections `[data]` and `[model]` are read into. Files written before
    generated sequences had a kind of their own say `kind = "text"` (or nothing) without a
    `data.path`: they still mean generated sequences (`kind = "sequences"`).

    Raises:
        ConfigError: for an unknown section or key, naming it, the source and the allowed keys.
    """
    top_level = {"kind", "seed", *_SECTION_NAMES, TUNE_TABLE}
    unknown = sorted(set(values) - top_level)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {source}; allowed: {', '.join(sorted(top_level))}")
    kind = _kind(values)
    sections = {}
    for name, cls in (KIND_SECTIONS[kind] | {"training": TrainingConfig, "gate": GateConfig}).items():
        section_values = values.get(name, {})
        if not isinstance(section_values, Mapping):
            raise ConfigError(f"[{name}] in {source} must be a table, got {section_values!r}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in section_values:
            if key not in allowed:
                raise ConfigError(
                    f"unknown key '{name}.{key}' for a {kind} model ({_KIND_ROLES[kind]}) in {source}; "
                    f"allowed: {', '.join(allowed)}{_kind_hint(kind, name, key)}"
                )
        sections[name] = cls(**section_values)
    return Config(kind=kind, seed=values.get("seed", 0), **sections)


_KIND_ROLES = {
    ModelKind.SEQUENCES: "generated sequences",
    ModelKind.TEXT: "text pairs from a file",
    ModelKind.VISION: "image pairs",
}


def _kind(values: Mapping[str, Any]) -> ModelKind:
    """The config's kind; a text config without `data.path` is the older spelling of `sequences`."""
    data = values.get("data", {})
    has_path = isinstance(data, Mapping) and "path" in data
    kind = values.get("kind")
    if kind is None:
        return ModelKind.TEXT if has_path else ModelKind.SEQUENCES
    kind = member_of(ModelKind, kind, "kind")
    if kind is ModelKind.TEXT and not has_path:
        return ModelKind.SEQUENCES
    return kind


def _kind_hint(kind: ModelKind, section: str, key: str) -> str:
    """What to change when a key belongs to another kind's section."""
    owners = [
        other
        for other, classes in KIND_SECTIONS.items()
        if section in classes and key in {f.name for f in dataclasses.fields(classes[section])}
    ]
    if not owners:
        return ""
    return f" ('{section}.{key}' is read by kind {' and '.join(map(str, owners))}: set kind = \"{owners[0]}\")"


def load_config(path: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read a TOML config file (or the defaults) and apply `section.field` overrides on top.

    Args:
        path: a TOML file with optional `kind`, `seed` and `[data]`, `[model]`, `[training]` tables.
        overrides: dotted keys such as `training.epochs`; values already typed or TOML literals.

    Raises:
        ConfigError: the file is missing or does not parse, or a key or value is invalid.
    """
    values = read_config_file(path) if path is not None else {}
    source = "defaults" if path is None else str(path)
    for dotted_key, value in (overrides or {}).items():
        *sections, key = dotted_key.split(".")
        table = values
        for section in sections:
            table = table.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"cannot set {dotted_key!r}: {section!r} is not a table")
        table[key] = parse_literal(value) if isinstance(value, str) else value
    return config_from_dict(values, source if not overrides else f"{source} + command-line options")


def read_config_file(path: Path | str) -> dict[str, Any]:
    """The tables of a TOML config file, unchecked (`config_from_dict` checks them).

    Raises:
        ConfigError: the file is missing, unreadable, or not TOML.
    """
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None


def config_toml(config: Config) -> str:
    """`config` as a TOML file that `load_config` reads back to an equal config (a sweep's best, for one)."""
    lines = [f"kind = {_toml_value(str(config.kind))}", f"seed = {config.seed}"]
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]", *(f"{key} = {_toml_value(value)}" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    """A TOML literal of a config value: a string (JSON's escapes are TOML's), a switch or a number."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def check_free_disk(config: Config, directory: Path) -> None:
    """Refuse generated pairs that would not fit the free disk of `directory`, the run's work directory.

    Checked before generating: otherwise the disk fills part-way through, after minutes of
    writing, and takes whatever else is stored there with it. `directory` need not exist yet.

    Raises:
        ConfigError: naming data.num_pairs, the bytes the pairs need and the bytes free.
    """
    needed = config.data.generated_bytes
    if needed == 0:
        return
    existing = Path(directory).absolute()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        pairs = config.data.num_pairs or DEFAULT_STEREO_PAIRS  # only stereo pairs are generated from an unset count
        raise ConfigError(
            f"{pairs:,} generated pairs would write {needed:,} bytes ({_gib(needed)}) to {directory}, which has "
            f"{free:,} bytes ({_gib(free)}) free: lower data.num_pairs or the size of each pair, or give the run "
            "a work directory on a larger disk"
        )


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"


def parse_literal(text: str) -> Any:
    """Read a command-line value as a TOML literal (`3`, `0.5`, `true`), else keep the string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, StrEnum) else value


def _qualified(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _require_int(obj: Any, name: str, section: str, *, minimum: int, maximum: int | None = None) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{_qualified(section, name)} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{_qualified(section, name)} must be an integer from {minimum} to {maximum:,}, got {value:,}")


def _require_float(
    obj: Any,
    name: str,
    section: str,
    *,
    minimum: float,
    below: float | None = None,
    exclusive_minimum: bool = False,
) -> None:
    """The one check of every float in the config: a number in its range, never infinite or NaN.

    An infinite learning rate or noise is accepted by Keras and NumPy and fails deep inside the
    run (NaN weights, a misleading sharing error), so it is refused here, naming the key.
    """
    value = getattr(obj, name)
    bounds = f"{'>' if exclusive_minimum else '>='} {minimum}" + (f" and < {below}" if below is not None else "")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if is_number and not _is_finite(value):
        raise ConfigError(f"{_qualified(section, name)} must be a finite number {bounds}, got {value!r}")
    in_range = is_number and (value > minimum if exclusive_minimum else value >= minimum) and (below is None or value < below)
    if not in_range:
        raise ConfigError(f"{_qualified(section, name)} must be a number {bounds}, got {value!r}")
    object.__setattr__(obj, name, float(value))


def _is_finite(value: int | float) -> bool:
    """Whether `value` is a float other than infinity and NaN; an integer too large for a float (10**400) is not."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _require_augmentation(obj: Any, section: str) -> None:
    """The one check of the augmentation strengths, for the `[data]` keys and for `Augmentation` alike."""
    for name, limit in AUGMENTATION_LIMITS.items():
        _require_float(obj, name, section, minimum=0.0, below=limit)


def _require_fractions(data: Any) -> None:
    try:
        check_fractions(data.validation_fraction, data.test_fraction)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    except OverflowError:  # an integer too large for a float (check_fractions' isfinite cannot take it)
        raise ConfigError(
            "data.validation_fraction and data.test_fraction must be numbers below 1.0, "
            f"got {data.validation_fraction!r} and {data.test_fraction!r}"
        ) from None
    object.__setattr__(data, "validation_fraction", float(data.validation_fraction))
    object.__setattr__(data, "test_fraction", float(data.test_fraction))


def member_of(enum: type[EnumT], value: Any, name: str) -> EnumT:
    """`value` as a member of `enum`: the one check of every enumerated value, in the config and the library.

    Raises:
        ConfigError (a ValueError): naming `name` (a config key or an argument) and the allowed values.
    """
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise ConfigError(f"{name} must be one of {allowed}; got {value!r}") from None


def _coerce_enum(obj: Any, name: str, enum: type[StrEnum], section: str) -> None:
    object.__setattr__(obj, name, member_of(enum, getattr(obj, name), _qualified(section, name)))


# The vision model per data source, chosen by measurement (BENCHMARKS.md, "Image verification").
# Generated stereo pairs: a disparity of a few pixels is the signal, so average pooling keeps
# small shifts and the fusion head compares the views location by location. Real images (class
# folders, pair CSVs) of classes never seen in training: max-pooling stages, every location's
# features kept (flatten), `[|a-b|, a*b]` scored (ahead of Koch et al.'s L1 head on one-shot
# accuracy); 8 filters: on handwritten characters as accurate as 16, in half the time per epoch.
# (Built last: a config checks its values with the helpers above.)
VISION_RECIPES: dict[ImageSource, VisionModelConfig] = {
    ImageSource.STEREO: VisionModelConfig(Backbone.COMPACT, VisionHead.FUSION, Pooling.AVG, filters=16),
    ImageSource.FOLDER: VisionModelConfig(Backbone.CONV4, VisionHead.SYMMETRIC, Pooling.FLATTEN, filters=8),
    ImageSource.CSV: VisionModelConfig(Backbone.CONV4, VisionHead.SYMMETRIC, Pooling.FLATTEN, filters=8),
}
