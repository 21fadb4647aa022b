"""Training throughput: the original script against the project, at identical math and at its tuned defaults.

The sides train on the original script's arrays (1,000 random pairs of 10 timesteps x 128
features, seed 0; the first 800 train, the last 200 validate after every epoch), each run
`--repeats` times in a fresh process, in rotating order so that load from other jobs on a shared
machine falls on every side:

- original: `bench/original_script.py`, its model and settings untouched (`LSTM(32)`, batch 64,
  RMSprop 1e-3), continued past its 3 epochs with `--extra-epochs`;
- project, identical math: `bench/project_training.py`, the library (`build_text_model`,
  `compile_for_training`, `fit`) at the original's settings: batch 64, RMSprop 1e-3, binary
  cross-entropy, 20,673 parameters (tests/test_identical_math.py proves loss, gradients and one
  update equal the original's);
- project, tuned defaults: the same with `TrainingConfig()`'s batch size and learning rate;
- project before this change: identical settings, `fit` as it was before its speed-ups
  (`--variant previous-fit`), for a before/after in the same run.

Per run: *steady pairs/s* = training pairs x (epochs - 1) / wall time of epochs 2..N (each epoch
is its training steps and its validation; the first epoch, which traces the graph, is left out
and reported on its own as *first epoch s*). Per side: median and min-max over the runs, and the
ratio of medians to the original's.

Then the quality check of the tuned defaults: test ROC AUC on the default generated data
(`Config()`: paraphrase pairs, 4,000 pairs of 20 timesteps, symmetric head, 8 epochs), trained
through the library with `TrainingConfig()` and with batch 64 at learning rate 1e-3 (the original
settings and the previous defaults), for seeds 0, 1, 2, each seed in a fresh process.

`--ablation` instead measures what each choice of `fit` is worth: the project at identical
settings with each `bench/project_training.py --variant` (one speed-up undone, or the original's
model choices), against the original and the unchanged project, in rotating order.

Prints markdown tables; writes every run's numbers, the commands and the machine as JSON to
`bench/results/throughput-<time>.json` (git-ignored).

Run: .venv/bin/python bench/throughput.py [--repeats 5] [--quick] [--ablation]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from variants import VARIANTS  # bench/ is on sys.path when run as a script

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
EPOCHS = 30  # per throughput run: 29 steady epochs after the first
QUICK_EPOCHS = 10
AUC_SEEDS = (0, 1, 2)
BATCH_64 = {"batch_size": 64, "learning_rate": 1e-3}  # the original settings, the previous defaults


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh-process runs per side (default 5)")
    parser.add_argument("--quick", action="store_true", help=f"1 repeat, {QUICK_EPOCHS} epochs, AUC on seed 0 only")
    parser.add_argument("--ablation", action="store_true", help="measure each fit variant instead (no AUC check)")
    parser.add_argument("--auc-seed", type=int, help=argparse.SUPPRESS)  # child process of the AUC check
    args = parser.parse_args()
    if args.auc_seed is not None:
        print(json.dumps(auc_for_seed(args.auc_seed)))
        return 0

    repeats = 1 if args.quick else args.repeats
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    started = time.time()
    results: dict = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "repeats": repeats,
        "epochs": epochs,
        "ablation": args.ablation,
    }
    print(f"machine: {describe(results['machine'])}\n")
    sides = ablation_sides(epochs) if args.ablation else throughput_sides(epochs)
    results["commands"] = {name: " ".join(command[1:]) for name, command in sides.items()}
    results["runs"] = run_rotating(sides, repeats)
    results["summary"] = summarize(results["runs"])
    if not args.ablation:
        seeds = AUC_SEEDS[:1] if args.quick else AUC_SEEDS
        results["auc"] = [run_auc(seed) for seed in seeds]
    results["load_average_end"] = os.getloadavg()
    results["bench_seconds"] = time.time() - started

    print_report(results)
    output = RESULTS / f"throughput-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwhole benchmark: {results['bench_seconds']:.0f} s; results written to {output.relative_to(ROOT)}")
    return 0


def throughput_sides(epochs: int) -> dict[str, list[str]]:
    project = [sys.executable, str(BENCH / "project_training.py"), "--seed", "0", "--epochs", str(epochs)]
    return {
        "original": [sys.executable, str(BENCH / "original_script.py"), "--seed", "0", "--extra-epochs", str(epochs - 3)],
        "project, identical math": project,
        "project, tuned defaults": [*project, "--tuned"],
        "project before this change (previous fit)": [*project, "--variant", "previous-fit"],
    }


def ablation_sides(epochs: int) -> dict[str, list[str]]:
    sides = throughput_sides(epochs)
    project = sides["project, identical math"]
    sides = {name: sides[name] for name in ("original", "project, identical math")}
    return sides | {f"project, {variant}": [*project, "--variant", variant] for variant in VARIANTS}


def run_rotating(sides: dict[str, list[str]], repeats: int) -> list[dict]:
    """Every side once per round, each round starting one side later than the one before."""
    names = list(sides)
    runs = []
    for round_number in range(repeats):
        for name in names[round_number % len(names) :] + names[: round_number % len(names)]:
            print(f"round {round_number + 1}/{repeats}: {name} ...", end=" ", flush=True)
            load = os.getloadavg()[0]
            report = run_json(sides[name])
            steady = report["steady_pairs_per_second"]
            runs.append(report | {"name": name, "round": round_number, "load_average_before": load})
            print(f"steady {steady:.0f} pairs/s, first epoch {report['epoch_seconds'][0]:.2f} s (load {load:.2f})")
    return runs


def run_json(command: list[str]) -> dict:
    """Run a fresh Python process; its last stdout line is its JSON report."""
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    started = time.time()
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if completed.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1]) | {"wall_seconds": time.time() - started}


def summarize(runs: list[dict]) -> dict[str, dict]:
    """Per side: median and range of steady pairs/s and first-epoch seconds, ratio of medians to the original."""
    summary = {}
    for name in dict.fromkeys(run["name"] for run in runs):
        mine = [run for run in runs if run["name"] == name]
        steady = [run["steady_pairs_per_second"] for run in mine]
        first = [run["epoch_seconds"][0] for run in mine]
        summary[name] = {
            "batch_size": mine[0]["batch_size"],
            "learning_rate": mine[0].get("learning_rate", 1e-3),  # the original's RMSprop default
            "params": mine[0]["params"],
            "data_sha256": mine[0]["data_sha256"],
            "steady_median": statistics.median(steady),
            "steady_min": min(steady),
            "steady_max": max(steady),
            "first_epoch_median": statistics.median(first),
            "first_epoch_min": min(first),
            "first_epoch_max": max(first),
            "fit_pairs_per_second_median": statistics.median(run["pairs_per_second"] for run in mine),
        }
    original = summary["original"]["steady_median"]
    for side in summary.values():
        side["ratio"] = side["steady_median"] / original
    hashes = {side["data_sha256"] for side in summary.values()}
    if len(hashes) != 1:
        sys.exit(f"the sides trained on different arrays: data hashes {sorted(hashes)}")
    return summary


def run_auc(seed: int) -> dict:
    print(f"AUC check, seed {seed} ...", end=" ", flush=True)
    result = run_json([sys.executable, str(Path(__file__).resolve()), "--auc-seed", str(seed)])
    print(", ".join(f"{name}: AUC {row['test_auc']:.4f}" for name, row in result["settings"].items()))
    return result


def auc_for_seed(seed: int) -> dict:
    """Child process: test AUC on the default generated data with the tuned defaults and with batch 64."""
    sys.path.insert(0, str(ROOT))
    import dataclasses

    import keras
    import numpy as np

    from siamese.config import Config, TrainingConfig
    from siamese.data.pairs import SPLIT_NAMES, PairSplits
    from siamese.data.sequences import PairSet, generate_sequence_splits
    from siamese.data.shards import pairs_per_shard
    from siamese.evaluation import roc_auc
    from siamese.models.text import build_text_model
    from siamese.training import compile_for_training, fit, predict

    config = Config(seed=seed)
    data = config.data
    item_shape = (data.timesteps, data.features)
    # The pairs a run generates (its shards' blocks, the same draws), held in memory here.
    blocks = generate_sequence_splits(data, np.random.default_rng(seed), pairs_per_shard(item_shape))
    splits = PairSplits(**{name: PairSet.concatenate(list(getattr(blocks, name)), item_shape) for name in SPLIT_NAMES})
    settings = {"tuned defaults": TrainingConfig(), "batch 64": dataclasses.replace(TrainingConfig(), **BATCH_64)}
    rows = {}
    for name, training in settings.items():
        keras.utils.set_random_seed(seed)
        model = build_text_model(features=data.features, units=config.model.units, head=config.model.head)
        compile_for_training(model, training)
        result = fit(model, splits.train, splits.validation, training, verbose=0, seed=seed)
        rows[name] = {
            "batch_size": training.batch_size,
            "learning_rate": training.learning_rate,
            "epochs": training.epochs,
            "test_auc": roc_auc(splits.test.labels, predict(model, splits.test)[:, 0]),
            "val_auc": result.history["val_auc"],
            "fit_seconds": result.seconds,
            "pairs_per_second": result.pairs_per_second,
        }
    return {"seed": seed, "train_pairs": len(splits.train), "test_pairs": len(splits.test), "settings": rows}


def print_report(results: dict) -> None:
    summary = results["summary"]
    print(f"\n### Training throughput ({results['repeats']} fresh-process runs per side, {results['epochs']} epochs each)\n")
    print("| side | batch | learning rate | steady pairs/s median (min-max) | ratio to original | first epoch s median (min-max) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, side in summary.items():
        print(
            f"| {name} | {side['batch_size']} | {side['learning_rate']:g} | {side['steady_median']:,.0f} "
            f"({side['steady_min']:,.0f}-{side['steady_max']:,.0f}) | **{side['ratio']:.2f}x** | "
            f"{side['first_epoch_median']:.2f} ({side['first_epoch_min']:.2f}-{side['first_epoch_max']:.2f}) |"
        )
    if "auc" not in results:
        return
    names = list(results["auc"][0]["settings"])
    print("\n### Test ROC AUC on the default generated data (Config(): 4,000 paraphrase pairs, 20 timesteps, 8 epochs)\n")
    header = " | ".join(
        f"{name} (batch {row['batch_size']}, lr {row['learning_rate']:g})" for name, row in results["auc"][0]["settings"].items()
    )
    print(f"| seed | {header} |")
    print("| ---: |" + " ---: |" * len(names))
    for seed_result in results["auc"]:
        cells = " | ".join(f"{seed_result['settings'][name]['test_auc']:.4f}" for name in names)
        print(f"| {seed_result['seed']} | {cells} |")
    medians = [statistics.median(seed_result["settings"][name]["test_auc"] for seed_result in results["auc"]) for name in names]
    print("| **median** | " + " | ".join(f"**{median:.4f}**" for median in medians) + " |")


def machine() -> dict:
    """What the numbers ran on: CPU, cores, memory, load and the library versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    memory = next((line.split()[1] for line in _read_lines("/proc/meminfo") if line.startswith("MemTotal")), "0")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory) / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in ("tensorflow", "keras", "numpy")},
        "load_average_start": os.getloadavg(),
    }


def describe(machine_info: dict) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in machine_info["versions"].items())
    load = ", ".join(f"{value:.2f}" for value in machine_info["load_average_start"])
    return (
        f"{machine_info['cpu']}, {machine_info['cores']} cores, {machine_info['memory_gib']} GiB; Python "
        f"{machine_info['python']}, {versions}; load average {load}"
    )


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
