"""Tiny configs of each family for the task tests: seconds to prepare, build and train."""

from __future__ import annotations

from pathlib import Path

from siamese.config import (
    Config,
    GateConfig,
    ImageDataConfig,
    ModelKind,
    SequenceDataConfig,
    TextFileDataConfig,
    TextModelConfig,
    TextPairModelConfig,
    TrainingConfig,
    VisionModelConfig,
)
from siamese.data.sample_questions import sample_question_pairs

TRAINING = TrainingConfig(epochs=2, batch_size=16, devices="cpu")


def sequences_config(**data) -> Config:
    return Config(
        kind=ModelKind.SEQUENCES,
        data=SequenceDataConfig(**{"num_pairs": 60, "timesteps": 5, "features": 8} | data),
        model=TextModelConfig(units=4),
        training=TRAINING,
        gate=GateConfig(min_quality=0.0, min_test_pairs=0, bootstrap_samples=200),
    )


def text_config(directory: Path, rows: int = 60) -> Config:
    """Writes `directory/questions.csv` of sample question pairs."""
    path = directory / "questions.csv"
    sample_question_pairs(rows, seed=2).to_csv(path, index=False)
    return Config(
        kind=ModelKind.TEXT,
        data=TextFileDataConfig(path=str(path)),
        model=TextPairModelConfig(units=4, vocabulary_size=50, sequence_length=6, embedding_dim=4),
        training=TRAINING,
    )


def vision_config(**data) -> Config:
    return Config(
        kind=ModelKind.VISION,
        data=ImageDataConfig(**{"num_pairs": 40, "image_size": 16} | data),
        model=VisionModelConfig(filters=4),
        training=TrainingConfig(epochs=1, batch_size=16, devices="cpu"),
    )


def register_untrained(config: Config, work_dir: Path, threshold: float | None = None) -> tuple[dict, dict[str, Path], Path, str]:
    """prepare -> MLflow run -> build -> log and register (with `threshold`), as the flow does but without training.

    The registry does not care whether a model was trained.

    Returns the registered version, the split paths, the model's `.keras` path and the run id.
    """
    from tasks.data import prepare_pairs
    from tasks.model import build_model, choose_devices
    from tasks.registry import log_and_register_model
    from tasks.tracking import start_run

    work_dir.mkdir(parents=True, exist_ok=True)
    paths = prepare_pairs.fn(config, work_dir).paths
    run_id = start_run.fn(config)
    model_path = build_model.fn(config, choose_devices.fn(config.training), paths["train"], run_id, work_dir)
    return log_and_register_model.fn(run_id, model_path, paths["test"], config, threshold), paths, model_path, run_id
