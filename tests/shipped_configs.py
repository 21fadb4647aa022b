"""The configs shipped in configs/, loaded as a user runs them: those meant for `--data FILE` get a sample pair file."""

from __future__ import annotations

from pathlib import Path

from siamese.config import Config, load_config
from siamese.data.sample_questions import sample_question_pairs

CONFIG_DIR = Path(__file__).parents[1] / "configs"
SHIPPED_CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))


def needs_data_file(path: Path) -> bool:
    """A config whose usage line is `siamese train --config C --data FILE`: it has no data of its own."""
    return "--data" in path.read_text()


def load_shipped(path: Path, directory: Path) -> Config:
    """`path` as `siamese train --config path [--data questions.csv]` loads it (`flows/cli.py`: `--data` sets the kind and path)."""
    if not needs_data_file(path):
        return load_config(path)
    pairs = directory / "questions.csv"
    sample_question_pairs(60, seed=0).to_csv(pairs, index=False)
    return load_config(path, overrides={"kind": "text", "data.path": str(pairs)})
