"""Data larger than memory: peak resident memory of generation, training and prediction as the data grows.

For each size (default 10^5, 10^6, 3 x 10^6 and 10^7 pairs), in a fresh process:

1. generate: the data stage, as the sequences family runs it: paraphrase pairs generated a
   shard at a time (`generate_sequence_splits`) and written as `train/validation/test.shards`
   (`write_shards`);
2. train: `siamese.training.fit`, one epoch, streaming the train split (shuffled) and the
   validation split from the shards, the reference model (shared `LSTM(32)`, symmetric head);
3. predict: `siamese.training.predict` streaming the test split, in batches of 256 as the
   flow's `evaluate-model` task does;
4. evaluate: the test AUC over every test score (labels and scores are held: 8 bytes a test
   pair, as the flow's evaluation holds them), a check that the model learned.

Reported per stage: wall seconds and the peak resident set size (RSS) while the stage ran, sampled
every 20 ms from `/proc/self/statm`; per process `ru_maxrss`; and the bytes on disk. The data is
deleted after each size. The scaling series uses 10 timesteps x 16 features (1,280 bytes a pair:
12.8 GB at 10^7 pairs) instead of the reference 20 x 128 (20 KiB a pair: 205 GB at 10^7, more
than the disk), and a large batch so that one epoch over 10^7 pairs takes minutes.

For contrast, the in-memory path (`generate_sequence_pairs` + `split_pairs`, then `fit` and
`predict` on arrays: what the pipeline did before shards) runs at the sizes given by
`--in-memory-sizes` (default 10^5 and 10^6); above them its data alone is computed, not run.

Prints a markdown table and writes everything as JSON to `bench/results/data-memory-<time>.json`.

Run: .venv/bin/python bench/data_memory.py [--sizes 100000 1000000 10000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
TIMESTEPS, FEATURES = 10, 16
BATCH_SIZE = 8192
PREDICT_BATCH_SIZE = 256  # siamese.training.predict's default, which the evaluate-model task uses
SEED = 0
MIB = 1 << 20
SAMPLE_SECONDS = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000, 10_000_000], help="pairs per run (sharded, streamed)"
    )
    parser.add_argument("--in-memory-sizes", type=int, nargs="*", default=[100_000, 1_000_000], help="sizes to also run in memory (contrast)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="training batch (validation runs 4x larger)")
    parser.add_argument("--predict-batch-size", type=int, default=PREDICT_BATCH_SIZE)
    parser.add_argument("--work-dir", type=Path, default=None, help="where the shards go (default: the system temporary directory)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10^4 and 10^5 pairs, in memory at 10^4")
    parser.add_argument("--child", choices=["shards", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.pairs, args.batch_size, args.predict_batch_size, args.work_dir)))
        return
    if args.quick:
        args.sizes, args.in_memory_sizes = [10_000, 100_000], [10_000]
    started = datetime.now(timezone.utc)
    runs = []
    for pairs in sorted(set(args.sizes) | set(args.in_memory_sizes)):
        for path in ("shards", "memory"):
            if pairs in (args.sizes if path == "shards" else args.in_memory_sizes):
                runs.append(_run_child(path, pairs, args.batch_size, args.predict_batch_size, args.work_dir))
                print(_row(runs[-1]), flush=True)
    results = {
        "benchmark": "data_memory",
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": _machine(),
        "shape": {"timesteps": TIMESTEPS, "features": FEATURES, "bytes_per_pair": 2 * 4 * TIMESTEPS * FEATURES},
        "batch_size": args.batch_size,
        "predict_batch_size": args.predict_batch_size,
        "runs": runs,
        "in_memory_computed": [_in_memory_bytes(pairs) for pairs in args.sizes if pairs not in args.in_memory_sizes],
    }
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / f"data-memory-{started:%Y%m%d-%H%M%S}.json"
    output.write_text(json.dumps(results, indent=1))
    print()
    print(_table(results))
    print(f"\nraw results: {output.relative_to(BENCH.parent)}")


def _run_child(path: str, pairs: int, batch_size: int, predict_batch_size: int, work_dir: Path | None) -> dict:
    command = [sys.executable, __file__, "--child", path, "--pairs", str(pairs), "--batch-size", str(batch_size)]
    command += ["--predict-batch-size", str(predict_batch_size)]
    if work_dir is not None:
        command += ["--work-dir", str(work_dir)]
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        sys.exit(f"{path} run at {pairs} pairs failed:\n{completed.stderr[-4000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 1)
    return result


# One run, in its own process


class PeakSampler:
    """Samples this process's resident set size in a thread; keeps the peak of each named stage."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self._stage = "start"
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    @contextmanager
    def stage(self, name: str) -> Iterator[dict]:
        """Time a stage; its record gets `seconds` and `peak_rss_mib` (sampled, and at both ends)."""
        record: dict = {}
        self._stage = name
        self.peaks[name] = self.rss()
        started = time.perf_counter()
        yield record
        record["seconds"] = round(time.perf_counter() - started, 2)
        self.peaks[name] = max(self.peaks[name], self.rss())
        record["peak_rss_mib"] = round(self.peaks[name] / MIB)
        record["ru_maxrss_mib_so_far"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        self._stage = "between"

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            stage = self._stage
            self.peaks[stage] = max(self.peaks.get(stage, 0), self.rss())


def _child(path: str, pairs: int, batch_size: int, predict_batch_size: int, work_dir: Path | None) -> dict:
    sampler = PeakSampler()
    import numpy as np

    from siamese.config import Config, SequenceDataConfig, TrainingConfig
    from siamese.data.pairs import SPLIT_NAMES, PairSplits
    from siamese.data.sequences import generate_sequence_pairs, generate_sequence_splits, split_pairs
    from siamese.data.shards import pairs_per_shard, write_shards

    config = Config(
        data=SequenceDataConfig(num_pairs=pairs, timesteps=TIMESTEPS, features=FEATURES),
        training=TrainingConfig(epochs=1, batch_size=batch_size),
        seed=SEED,
    )
    data = config.data
    result: dict = {"path": path, "pairs": pairs, "rss_after_imports_mib": round(sampler.rss() / MIB)}
    directory = Path(tempfile.mkdtemp(prefix="data-memory-", dir=work_dir))
    try:
        with sampler.stage("generate") as record:
            rng = np.random.default_rng(config.seed)
            if path == "shards":
                item_shape = (data.timesteps, data.features)
                blocks = generate_sequence_splits(data, rng, pairs_per_shard(item_shape))
                splits = PairSplits(
                    **{name: write_shards(getattr(blocks, name), directory / f"{name}.shards", item_shape) for name in SPLIT_NAMES}
                )
            else:  # what the pipeline did before shards: everything generated, then split by copying
                splits = split_pairs(generate_sequence_pairs(data, rng), data.validation_fraction, data.test_fraction, rng)
        record["disk_bytes"] = sum(file.stat().st_size for file in directory.rglob("*") if file.is_file())
        record["array_bytes"] = _in_memory_bytes(pairs)["data_bytes"]
        record["splits"] = {name: len(getattr(splits, name)) for name in ("train", "validation", "test")}
        if path == "shards":
            record["shards"] = {name: len(getattr(splits, name).shard_sizes) for name in ("train", "validation", "test")}
        result["generate"] = record

        with sampler.stage("import_and_build") as record:
            import keras

            from siamese.evaluation import roc_auc
            from siamese.models.text import build_text_model
            from siamese.training import compile_for_training, fit, predict

            keras.utils.set_random_seed(config.seed)
            model = build_text_model(features=data.features, units=config.model.units, head=config.model.head)
            compile_for_training(model, config.training)
        result["import_and_build"] = record

        with sampler.stage("train") as record:
            trained = fit(model, splits.train, splits.validation, config.training, verbose=0, seed=config.seed)
        record["train_pairs_per_second"] = round(trained.pairs_per_second)
        record["val_auc"] = round(trained.history["val_auc"][-1], 4)
        result["train"] = record

        with sampler.stage("predict") as record:
            scores = predict(model, splits.test, predict_batch_size)
        record["pairs_per_second"] = round(len(splits.test) / record["seconds"])
        result["predict"] = record

        with sampler.stage("evaluate") as record:
            record["test_auc"] = round(float(roc_auc(splits.test.labels, scores.reshape(-1))), 4)
        result["evaluate"] = record
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def _in_memory_bytes(pairs: int) -> dict:
    """The generated arrays alone (left + right + labels); the in-memory path held them at least twice."""
    data = pairs * (2 * 4 * TIMESTEPS * FEATURES + 4)
    return {"pairs": pairs, "data_bytes": data, "generate_and_split_bytes": 2 * data}


# Reporting


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / (1 << 20), 1),
        "load_average_at_end": [round(load, 2) for load in os.getloadavg()],
        "python": platform.python_version(),
        "tensorflow": version("tensorflow"),
        "keras": version("keras"),
        "numpy": version("numpy"),
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
    }


def _row(run: dict) -> str:
    generate, train, predict, evaluate = run["generate"], run["train"], run["predict"], run["evaluate"]
    disk = f"{generate['disk_bytes'] / 1e9:.2f} GB" if run["path"] == "shards" else f"({generate['array_bytes'] / 1e9:.2f} GB in RAM)"
    return (
        f"| {run['pairs']:,} | {run['path']} | {disk} "
        f"| {generate['seconds']:.0f} s / {generate['peak_rss_mib']:,} MiB "
        f"| {train['seconds']:.0f} s ({train['train_pairs_per_second']:,} pairs/s) / {train['peak_rss_mib']:,} MiB "
        f"| {predict['seconds']:.0f} s / {predict['peak_rss_mib']:,} MiB "
        f"| {evaluate['peak_rss_mib']:,} MiB | {run['ru_maxrss_mib']:,} MiB | {evaluate['test_auc']:.3f} |"
    )


def _table(results: dict) -> str:
    machine = results["machine"]
    lines = [
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM; TensorFlow {machine['tensorflow']}, "
        f"Keras {machine['keras']}; pairs of {TIMESTEPS} timesteps x {FEATURES} features; one epoch, training batch "
        f"{results['batch_size']}, prediction batch {results['predict_batch_size']}.",
        "",
        "| pairs | path | data | generate: time / peak RSS | train (+validate): time / peak RSS | predict test: time / peak RSS "
        "| evaluate: peak RSS | process peak (ru_maxrss) | test AUC |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(_row(run) for run in results["runs"]),
    ]
    for computed in results["in_memory_computed"]:
        needed = computed["generate_and_split_bytes"]
        verdict = "more than" if needed > machine["memory_gib"] * (1 << 30) else "within"
        lines.append(
            f"| {computed['pairs']:,} | memory (not run) | ({computed['data_bytes'] / 1e9:.1f} GB in RAM) "
            f"| needs at least {needed / 1e9:.1f} GB (generated + split copies): {verdict} the machine's {machine['memory_gib']} GiB "
            "| | | | | |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
