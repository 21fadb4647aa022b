"""Model quality on real pair data: the default `siamese train` against every baseline it logs.

For each development data set present in `../shared/data` (and the bundled sets, always), runs
`siamese train` with no other option than the data, as a new user would, in a temporary MLflow
store, and prints the run's test metrics beside the baselines the same run logged on the same
test split, with the wall time of the whole command. Extra arguments are passed on to
`siamese train` (e.g. `--set model.encoder=bilstm`), so variants are measured the same way.

    .venv/bin/python bench/quality.py [text|images] [SIAMESE TRAIN OPTIONS...]

Text pair sets (`text`, the default): `siamese train --model text --data FILE`.
- `quora-10k`: 10,000 pairs drawn (seed 0) from `quora_dev.tsv`, split 60/20/20 by the run.
- `mrpc`: `msrp_train.tsv` and `msrp_test.tsv` in one file with a `split` column (the official
  test split; validation carved from train by the run).
- `sample`: the bundled generated question pairs (`siamese.data.sample_questions`).

Image class folders (`images`): `siamese train --images FOLDER`, verification on classes the
model never saw, with the 5- and 20-way one-shot accuracies beside the pixel baseline's.
- `omniglot-by-character`: `omniglot_small2/<alphabet>/<character>/`, split by class (the default).
- `omniglot-by-alphabet`: the same with `data.split_by = group`: whole alphabets held out.
- `digits`: scikit-learn's bundled 8x8 digits written out as a class folder (no download).
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
IMAGE_BASELINES = ("pixel_cosine",)
ONE_SHOT_WAYS = (5, 20)


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


def digits_folder(directory: Path) -> Path:
    """scikit-learn's bundled digits as `digits/<digit>/<n>.png`, 8-bit grayscale."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = directory / "digits"
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype("uint8"), mode="L").save(folder / f"{index}.png")
    return root


def train(arguments: list[str], experiment: str, store: Path) -> tuple[dict[str, float], float]:
    """One `siamese train ARGUMENTS` run; its logged metrics and the command's wall time."""
    environment = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}", "CI": "true"}
    started = time.perf_counter()
    subprocess.run([str(SIAMESE), "train", *arguments], check=True, env=environment, cwd=store, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    import mlflow

    mlflow.set_tracking_uri(environment["MLFLOW_TRACKING_URI"])
    run = mlflow.search_runs(experiment_names=[experiment], order_by=["start_time DESC"], max_results=1).iloc[0]
    metrics = {column.removeprefix("metrics."): value for column, value in run.items() if column.startswith("metrics.")}
    return metrics, seconds


def report(name: str, metrics: dict[str, float], seconds: float, baselines: tuple[str, ...] = BASELINES) -> None:
    model = {metric: metrics.get(f"test/{metric}") for metric in SIMILARITY_METRICS}
    one_shot = [f"test/oneshot_{ways}way_accuracy" for ways in ONE_SHOT_WAYS if f"test/oneshot_{ways}way_accuracy" in metrics]
    columns = "".join(f" {ways:>2}-way 1-shot" for ways in ONE_SHOT_WAYS[: len(one_shot)])
    print(f"\n{name}: default run {seconds:.0f} s, stopped at epoch {metrics.get('train/stopped_epoch'):.0f}")
    print(f"  {'':28} {'test AUC':>9} {'accuracy':>9}{columns}")
    print(f"  {'model':28} {model['roc_auc']:9.4f} {model['accuracy']:9.4f}" + "".join(f" {metrics[key]:12.3f}" for key in one_shot))
    strongest = 0.0
    for baseline in baselines:
        auc, accuracy = metrics.get(f"baseline/{baseline}_auc"), metrics.get(f"baseline/{baseline}_accuracy")
        if auc is not None:
            strongest = max(strongest, auc)
            shots = [metrics.get(f"baseline/{baseline}_oneshot_{ways}way") for ways in ONE_SHOT_WAYS[: len(one_shot)]]
            print(f"  {'baseline ' + baseline:28} {auc:9.4f} {accuracy:9.4f}" + "".join(f" {shot:12.3f}" for shot in shots if shot is not None))
    print(f"  model - strongest baseline: {model['roc_auc'] - strongest:+.4f} AUC")


def text_sets(directory: Path, extra: list[str]) -> None:
    sets = {"quora-10k": quora_sample(directory), "mrpc": mrpc_with_split_column(directory), "sample": sample_questions(directory)}
    for name, path in sets.items():
        if path is None:
            print(f"\n{name}: skipped ({SHARED_DATA} has no such file)")
            continue
        arguments = ["--model", "text", "--data", str(path), *(["--split-column", "split"] if name == "mrpc" else [])]
        report(name, *train([*arguments, *extra], "siamese-text", _store(directory, name)))


def image_sets(directory: Path, extra: list[str]) -> None:
    omniglot = SHARED_DATA / "omniglot_small2"
    sets = {
        "omniglot-by-character": [] if omniglot.is_dir() else None,
        "omniglot-by-alphabet": ["--set", "data.split_by=group"] if omniglot.is_dir() else None,
    }
    for name, options in sets.items():
        if options is None:
            print(f"\n{name}: skipped ({omniglot} is not there)")
            continue
        arguments = ["--images", str(omniglot), *options, *extra]
        report(name, *train(arguments, "siamese-vision", _store(directory, name)), IMAGE_BASELINES)
    arguments = ["--images", str(digits_folder(directory)), *extra]
    report("digits", *train(arguments, "siamese-vision", _store(directory, "digits")), IMAGE_BASELINES)


def _store(directory: Path, name: str) -> Path:
    store = directory / f"store-{name}"
    store.mkdir()
    return store


def main(arguments: list[str]) -> None:
    run_sets = image_sets if arguments[:1] == ["images"] else text_sets
    extra = arguments[1:] if arguments[:1] in (["images"], ["text"]) else arguments
    with tempfile.TemporaryDirectory() as temporary:
        run_sets(Path(temporary), extra)


if __name__ == "__main__":
    main(sys.argv[1:])
