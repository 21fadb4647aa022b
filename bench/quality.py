"""Model quality on real pair data: the default `siamese train` against every baseline it logs.

For each development data set present in `../shared/data` (and the bundled sample questions,
always), runs `siamese train --model text --data FILE` with no other option, as a new user
would, in a temporary MLflow store, and prints the run's test metrics beside the baselines the
same run logged on the same test split, with the wall time of the whole command. Extra
arguments are passed on to `siamese train` (e.g. `--set model.encoder=bilstm`), so variants are
measured the same way.

    .venv/bin/python bench/quality.py [SIAMESE TRAIN OPTIONS...]

Data sets:
- `quora-10k`: 10,000 pairs drawn (seed 0) from `quora_dev.tsv`, split 60/20/20 by the run.
- `mrpc`: `msrp_train.tsv` and `msrp_test.tsv` in one file with a `split` column (the official
  test split; validation carved from train by the run).
- `sample`: the bundled generated question pairs (`siamese.data.sample_questions`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY.parent / "shared" / "data"
SIAMESE = Path(sys.executable).parent / "siamese"
SIMILARITY_METRICS = ("roc_auc", "accuracy")
BASELINES = ("majority", "tfidf_cosine", "char_tfidf_cosine", "siamese_linear")


def quora_sample(directory: Path) -> Path | None:
    source = SHARED_DATA / "quora_dev.tsv"
    if not source.exists():
        return None
    path = directory / "quora-10k.tsv"
    pd.read_csv(source, sep="\t").sample(10_000, random_state=0).to_csv(path, sep="\t", index=False)
    return path


def mrpc_with_split_column(directory: Path) -> Path | None:
    """The official MRPC train and test files as one table with a `split` column (quotes are text)."""
    files = {"train": SHARED_DATA / "msrp_train.tsv", "test": SHARED_DATA / "msrp_test.tsv"}
    if not all(path.exists() for path in files.values()):
        return None
    frames = [
        pd.read_csv(path, sep="\t", quoting=3, encoding="utf-8-sig", dtype=str).assign(split=split)
        for split, path in files.items()
    ]
    path = directory / "mrpc.tsv"
    pd.concat(frames).to_csv(path, sep="\t", index=False, quoting=3)
    return path


def sample_questions(directory: Path) -> Path:
    from siamese.data.sample_questions import sample_question_pairs

    path = directory / "sample.csv"
    sample_question_pairs(2000, seed=0).to_csv(path, index=False)
    return path


def train(data: Path, extra: list[str], store: Path) -> tuple[dict[str, float], float]:
    """One default `siamese train` run on `data`; its logged metrics and the command's wall time."""
    command = [str(SIAMESE), "train", "--model", "text", "--data", str(data)]
    if data.name == "mrpc.tsv":
        command += ["--split-column", "split"]
    environment = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}", "CI": "true"}
    started = time.perf_counter()
    subprocess.run([*command, *extra], check=True, env=environment, cwd=store, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    import mlflow

    mlflow.set_tracking_uri(environment["MLFLOW_TRACKING_URI"])
    run = mlflow.search_runs(experiment_names=["siamese-text"], order_by=["start_time DESC"], max_results=1).iloc[0]
    metrics = {column.removeprefix("metrics."): value for column, value in run.items() if column.startswith("metrics.")}
    return metrics, seconds


def report(name: str, metrics: dict[str, float], seconds: float) -> None:
    model = {metric: metrics.get(f"test/{metric}") for metric in SIMILARITY_METRICS}
    print(f"\n{name}: default run {seconds:.0f} s, stopped at epoch {metrics.get('train/stopped_epoch'):.0f}")
    print(f"  {'':28} {'test AUC':>9} {'accuracy':>9}")
    print(f"  {'model':28} {model['roc_auc']:9.4f} {model['accuracy']:9.4f}")
    strongest = 0.0
    for baseline in BASELINES:
        auc, accuracy = metrics.get(f"baseline/{baseline}_auc"), metrics.get(f"baseline/{baseline}_accuracy")
        if auc is not None:
            strongest = max(strongest, auc)
            print(f"  {'baseline ' + baseline:28} {auc:9.4f} {accuracy:9.4f}")
    print(f"  model - strongest baseline: {model['roc_auc'] - strongest:+.4f} AUC")


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        sets = {"quora-10k": quora_sample(directory), "mrpc": mrpc_with_split_column(directory), "sample": sample_questions(directory)}
        for name, path in sets.items():
            if path is None:
                print(f"\n{name}: skipped ({SHARED_DATA} has no such file)")
                continue
            store = directory / f"store-{name}"
            store.mkdir()
            report(name, *train(path, extra, store))


if __name__ == "__main__":
    main(sys.argv[1:])
