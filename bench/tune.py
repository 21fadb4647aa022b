"""Sweeps (issue 17): `siamese tune` on 10,000 Quora pairs against the defaults, with 1 and 2 workers; per-trial overhead.

    .venv/bin/python bench/tune.py [quality|overhead] [--trials 16]

quality (needs ../shared/data/quora_dev.tsv): 10,000 pairs drawn with seed 0 (as bench/quality.py),
then, each in a new temporary MLflow store and folder, as a user would type them:
  1. `siamese train --model text --data quora-10k.tsv`: the defaults' test AUC and wall time;
  2. `siamese tune --data quora-10k.tsv --trials 16 --parallel 1`;
  3. the same with `--parallel 2` (two worker processes on the machine's cores).
For each sweep: wall time, the best config's test AUC (its final training run), the best trial's
validation AUC, the trials pruned, and an estimate of what pruning saved: each pruned trial's
missing epochs (the median epochs of the complete trials, less the epochs it ran) at that sweep's
mean seconds per epoch.

overhead: the same training run directly (library calls in this process) and as sweep trials
(Prefect task on a one-worker local Dask cluster, nested MLflow run, Optuna storage). The trials
vary only `model.margin`, which the default binary cross-entropy loss does not read, so each trains
exactly what the direct run trains (2,000 Quora pairs, 3 epochs, patience 0). Overhead per trial:
a trial's run duration in MLflow (opened by the flow before submission, ended after its result
came back) less the direct run's seconds; the first trial of a new worker also imports TensorFlow.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPOSITORY = Path(__file__).resolve().parents[1]
QUORA = REPOSITORY.parent / "shared" / "data" / "quora_dev.tsv"
SIAMESE = Path(sys.executable).parent / "siamese"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["quality", "overhead"], nargs="?", default="quality")
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    if not QUORA.exists():
        sys.exit(f"{QUORA} is not here: this benchmark needs the development data")
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as directory:
        if args.part == "quality":
            quality(Path(directory), args.trials)
        else:
            overhead(Path(directory))


def quora_sample(directory: Path, pairs: int) -> Path:
    path = directory / f"quora-{pairs}.tsv"
    pd.read_csv(QUORA, sep="\t").sample(pairs, random_state=0).to_csv(path, sep="\t", index=False)
    return path


def quality(directory: Path, trials: int) -> None:
    data = quora_sample(directory, 10_000)
    seconds, store = command(directory / "defaults", "train", "--model", "text", "--data", str(data))
    defaults = final_run(store, None)
    print(f"defaults: test AUC {defaults['test/roc_auc']:.4f} in {seconds:.0f} s", flush=True)
    walls = {}
    for parallel in (1, 2):
        seconds, store = command(directory / f"sweep-{parallel}", "tune", "--data", str(data), "--trials", str(trials), "--parallel", str(parallel))
        walls[parallel] = seconds
        report_sweep(store, parallel, seconds, defaults["test/roc_auc"])
    print(f"wall time, 1 worker / 2 workers: {walls[1] / walls[2]:.2f}x")


def command(folder: Path, *args: str) -> tuple[float, str]:
    folder.mkdir(parents=True)
    started = time.perf_counter()
    completed = subprocess.run([str(SIAMESE), *args], cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode not in (0, 3):
        sys.exit(f"siamese {' '.join(args)} exited {completed.returncode}:\n{completed.stderr[-3000:]}")
    return seconds, f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"


def final_run(store: str, sweep_run_id: str | None) -> dict[str, float]:
    """The test metrics of the store's training run (with a sweep: the best config's, which names the sweep)."""
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("siamese-text").experiment_id
    query = "metrics.`test/roc_auc` > 0" + (f" and tags.`tune.sweep_run_id` = '{sweep_run_id}'" if sweep_run_id else "")
    (run,) = client.search_runs([experiment], query)
    return run.data.metrics


def report_sweep(store: str, parallel: int, seconds: float, defaults_auc: float) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("siamese-text").experiment_id
    (sweep,) = client.search_runs([experiment], "params.`tune.trials` != ''")
    trials = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{sweep.info.run_id}'")
    final = final_run(store, sweep.info.run_id)
    states = [run.data.tags["trial.state"] for run in trials]
    epochs = {state: [int(run.data.metrics["trial/epochs"]) for run in trials if run.data.tags["trial.state"] == state] for state in set(states)}
    seconds_per_epoch = sum(run.data.metrics["trial/seconds"] for run in trials) / max(1, sum(sum(e) for e in epochs.values()))
    complete_median = statistics.median(epochs.get("complete", [0]))
    saved_epochs = sum(max(0, complete_median - ran) for ran in epochs.get("pruned", []))
    best = client.get_run(sweep.info.run_id).data
    print(
        f"sweep, {parallel} worker(s): {seconds:.0f} s; best trial {best.params['tune.best_trial']} "
        f"(validation AUC {best.metrics['tune/best_value']:.4f}); best config's test AUC {final['test/roc_auc']:.4f} "
        f"({final['test/roc_auc'] - defaults_auc:+.4f} against the defaults); trials: "
        + ", ".join(f"{states.count(state)} {state}" for state in ("complete", "pruned", "failed"))
        + f"; epochs run {sum(sum(e) for e in epochs.values())}; pruning saved about {saved_epochs:.0f} epochs "
        f"= {saved_epochs * seconds_per_epoch:.0f} s of trial time ({seconds_per_epoch:.1f} s per epoch)",
        flush=True,
    )
    for run in sorted(trials, key=lambda run: int(run.data.params["trial.number"])):
        print(
            f"  trial {run.data.params['trial.number']:>2} {run.data.tags['trial.state']:>8} "
            f"{run.data.metrics.get('trial/value', float('nan')):.4f} {int(run.data.metrics['trial/epochs']):>2} epochs "
            f"{run.data.metrics['trial/seconds']:5.0f} s  {run.data.tags['trial.values']}"
        )


def overhead(directory: Path) -> None:
    import os

    store = f"sqlite:///{directory / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = store
    from siamese.config import load_config

    data = quora_sample(directory, 2_000)
    config = load_config(None, {"kind": "text", "data.path": str(data), "training.epochs": 3, "training.patience": 0})
    from siamese.families import family_of

    splits = family_of(config.kind).prepare_splits(config, directory).paths  # once, as a sweep does: not a trial's cost
    direct = [direct_training(config, splits, directory / f"direct-{attempt}") for attempt in range(4)]
    print("direct: " + ", ".join(f"{seconds:.1f}" for seconds in direct) + " s", flush=True)

    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        from flows.tune import tune_flow

        result = tune_flow(config=config, space={"model.margin": [0.4, 0.6]}, trials=4, parallel=1, work_dir=directory / "sweep")
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("siamese-text").experiment_id
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{result['sweep_run_id']}'")
    runs.sort(key=lambda run: int(run.data.params["trial.number"]))
    through = [(run.info.end_time - run.info.start_time) / 1000 for run in runs]
    inside = [run.data.metrics["trial/seconds"] for run in runs]
    print("as trials (run open to run end): " + ", ".join(f"{seconds:.1f}" for seconds in through) + " s")
    print("  of which inside the task (build + train): " + ", ".join(f"{seconds:.1f}" for seconds in inside) + " s")
    warm_direct, warm_through = statistics.mean(direct[1:]), statistics.mean(through[1:])
    print(
        f"overhead per trial: first (a new worker) {through[0] - direct[0]:+.1f} s; later ones "
        f"{warm_through - warm_direct:+.1f} s ({warm_through:.1f} s against {warm_direct:.1f} s direct)"
    )


def direct_training(config, splits: dict[str, Path], folder: Path) -> float:
    """What a trial runs, without Prefect, Dask, MLflow or Optuna: build (seeded), fit, save."""
    import keras

    from siamese.families import family_of
    from siamese.training import compile_for_training, fit

    started = time.perf_counter()
    folder.mkdir(parents=True)
    family = family_of(config.kind)
    keras.utils.set_random_seed(config.seed)
    train, validation = (family.load_split(config, splits[name]) for name in ("train", "validation"))
    model = family.build(config, train, "float32")
    trainer, train = family.trainer(config, model, train)
    compile_for_training(trainer, config.training, config.task, family.loss(config))
    fit(trainer, train, validation, config.training, seed=config.seed, verbose=0)
    model.save(folder / "trained.keras")
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
