"""Baseline vs project, side by side in one run: training throughput and `siamese train` wall time.

1. Throughput at identical settings. `bench/original_script.py` (the original Keras example) and
   `bench/project_training.py` (the project's library on the very same arrays, twice: plain and
   under the `train-model` task's distribution scope) each run `--repeats` times as fresh
   processes, interleaved so that load drifting on a shared machine hits every side alike.
   Reported: pairs/s of `fit` (tracing and validation included, as `siamese.training.fit`
   defines it), steady-state pairs/s (epochs after the first) and pairs per CPU-second of `fit`,
   each as the median and the best run, with the ratios project / baseline.
2. Wall time at the original configuration. `siamese train <original configuration>` runs as a
   subprocess from a temporary directory with a fresh MLflow store and a fresh `PREFECT_HOME`
   ("cold"; then once more on the same stores, "warm", unless `--quick`), against the baseline
   script's median wall time. The breakdown comes from the run's own records, see `flow_breakdown`.
3. Import cost (unless `--quick`): what each import adds on top of the previous one, in the order
   the command line pays for them, in one fresh process.

Prints tables and writes everything as JSON to `bench/results/` (git-ignored).

Run: .venv/bin/python bench/compare.py [--repeats 3] [--quick]      (or: make bench)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"

# The original script's configuration, as the project's command line spells it (flows/cli.py).
ORIGINAL_CONFIGURATION = [
    "--data", "random", "--head", "concat", "--num-pairs", "1000", "--timesteps", "10", "--epochs", "3", "--batch-size", "64",
]  # fmt: skip

# Which part of a run each Prefect task belongs to.
TASK_CATEGORIES = {
    "train-model": "training",
    "start-mlflow-run": "MLflow logging/registration",
    "log-dataset": "MLflow logging/registration",
    "log-training": "MLflow logging/registration",
    "log-sharing-report": "MLflow logging/registration",
    "log-evaluation": "MLflow logging/registration",
    "log-and-register-model": "MLflow logging/registration",
    "end-mlflow-run": "MLflow logging/registration",
    "gate-challenger": "MLflow logging/registration",
    "verify-weight-sharing": "verification/evaluation",
    "evaluate-model": "verification/evaluation",
    "choose-devices": "other",
    "check-tracking-store": "other",
    "prepare-pairs": "other",
    "build-model": "other",
    "publish-summary": "other",
}
CATEGORIES = [
    "start-up + imports",
    "Prefect start",
    "training",
    "MLflow logging/registration",
    "verification/evaluation",
    "other",
]
# Incremental imports, in the order `siamese train` pays for them (flows.cli, then flows.train,
# which imports prefect, then the tasks: numpy, keras/TensorFlow, mlflow; matplotlib comes with
# siamese.evaluation; then Prefect's server package). Each step costs what it adds to the ones
# before it, so the steps add up to the total.
IMPORT_STEPS = [
    ("flows.cli (argparse, siamese.config)", "import flows.cli"),
    ("prefect", "import prefect, prefect.cache_policies, prefect.artifacts, prefect.runtime"),
    ("numpy", "import numpy"),
    ("keras + tensorflow (all the baseline imports)", "import keras"),
    ("matplotlib (siamese.evaluation; keras has loaded most of it)", "import siamese.evaluation"),
    ("mlflow (+ mlflow.keras)", "import mlflow, mlflow.keras"),
    ("rest of flows.train (project modules)", "import flows.train"),
    # Not imported by the CLI itself: Prefect imports its server package when the flow starts the
    # temporary server, so this lands before "Starting temporary server" in the run's timeline.
    ("prefect.server.api.server (for the temporary server)", "import prefect.server.api.server"),
]
LOG_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \| \w+\s+\| (.*)$")
TASK_SUFFIX = re.compile(r"-[0-9a-f]{3}$")  # Prefect's task-run names: "<task>-<3 hex digits>"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="runs of each throughput side (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, cold `siamese train` only, no import breakdown (~1 min)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the throughput runs' data and weights")
    parser.add_argument("--output", type=Path, help="JSON file to write (default bench/results/compare-<time>.json)")
    args = parser.parse_args()
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")

    started = time.time()
    results: dict = {"machine": machine(), "started": iso(started), "repeats": repeats, "quick": args.quick}
    print(f"machine: {describe_machine(results['machine'])}\n")

    throughput_runs = run_throughput(repeats, args.seed)
    results["throughput"] = summarise_throughput(throughput_runs)

    train_runs = run_siamese_train(warm=not args.quick)
    results["siamese_train"] = train_runs
    baseline = median_run(throughput_runs["baseline"])
    results["wall"] = wall_comparison(baseline, train_runs)

    if not args.quick:
        results["imports"] = import_breakdown()

    results["finished"] = iso(time.time())
    results["bench_seconds"] = time.time() - started
    results["load_average_end"] = os.getloadavg()

    print_report(results)
    output = args.output or RESULTS / f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwhole benchmark: {results['bench_seconds']:.0f} s; results written to {display_path(output)}")
    return 0


# ---------------------------------------------------------------------------------------------
# Throughput


def run_throughput(repeats: int, seed: int) -> dict[str, list[dict]]:
    """Each side `repeats` times, one fresh process per run, order rotated every repeat."""
    sides = {
        "baseline": [str(BENCH / "original_script.py"), "--seed", str(seed)],
        "project": [str(BENCH / "project_training.py"), "--seed", str(seed), "--strategy", "none"],
        "project + task strategy": [str(BENCH / "project_training.py"), "--seed", str(seed), "--strategy", "plan"],
    }
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    names = list(sides)
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for side in order:
            print(f"throughput {repeat + 1}/{repeats}: {side} ...", end=" ", flush=True)
            run = run_script(sides[side])
            runs[side].append(run)
            print(
                f"{run['pairs_per_second']:.0f} pairs/s (fit {run['fit_seconds']:.2f} s, {run['fit_cpu_seconds']:.2f} CPU s; "
                f"wall {run['wall_seconds']:.1f} s; load {run['load_average_before']:.2f})"
            )
    hashes = {run["data_sha256"] for side_runs in runs.values() for run in side_runs}
    if len(hashes) != 1:
        raise SystemExit(f"compare: the sides trained on different data (hashes {sorted(hashes)}); the comparison is void")
    return runs


def run_script(arguments: list[str]) -> dict:
    """Run one timing script from a scratch directory; its last stdout line is its JSON report."""
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        load = os.getloadavg()[0]
        completed, spawned, ended, cpu = timed_run([sys.executable, *arguments], cwd=directory, env=child_env())
    if completed.returncode != 0:
        fail(arguments, completed)
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    report |= {
        "wall_seconds": ended - spawned,
        "cpu_seconds": cpu,
        # Interpreter start-up as well as the imports: spawn -> the script's imports done.
        "startup_and_import_seconds": report["imported"] - spawned,
        "exit_seconds": ended - report["fit_ended"],
        "load_average_before": load,
    }
    return report


def summarise_throughput(runs: dict[str, list[dict]]) -> dict:
    """Per side: median, best and range of each rate, and both ratios to the baseline.

    The median is the headline. The best run is the one least slowed by other jobs (on a shared
    machine noise only ever slows a run down), so its ratio is a second, contention-robust view.
    Pairs per CPU-second counts the work done, whoever else held the cores meanwhile.
    """
    for side_runs in runs.values():
        for run in side_runs:
            run["pairs_per_cpu_second"] = run["train_pairs"] * run["epochs"] / run["fit_cpu_seconds"]
    stats = {side: {key: _stats([run[key] for run in side_runs]) for key in RATES} for side, side_runs in runs.items()}
    summary: dict = {"runs": runs, "sides": {}}
    for side, side_runs in runs.items():
        summary["sides"][side] = {
            "train_pairs": side_runs[0]["train_pairs"],
            "median_fit_seconds": statistics.median(run["fit_seconds"] for run in side_runs),
            "median_first_epoch_seconds": statistics.median(run["epoch_seconds"][0] for run in side_runs),
            "median_fit_cpu_seconds": statistics.median(run["fit_cpu_seconds"] for run in side_runs),
        }
        for key in RATES:
            summary["sides"][side][key] = stats[side][key] | {
                "ratio_median": stats[side][key]["median"] / stats["baseline"][key]["median"],
                "ratio_best": stats[side][key]["best"] / stats["baseline"][key]["best"],
            }
    return summary


RATES = {
    "pairs_per_second": "fit pairs/s",
    "steady_pairs_per_second": "steady pairs/s",
    "pairs_per_cpu_second": "pairs per CPU-s",
}


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "best": max(values), "min": min(values)}


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one for an even count)."""
    return sorted(runs, key=lambda run: run["wall_seconds"])[(len(runs) - 1) // 2]


# ---------------------------------------------------------------------------------------------
# `siamese train` wall time


def run_siamese_train(warm: bool) -> list[dict]:
    """`siamese train <original configuration>` on fresh stores, then (warm) again on the same ones."""
    with tempfile.TemporaryDirectory(prefix="bench-siamese-") as directory:
        return _run_siamese_train(Path(directory), warm)


def _run_siamese_train(store: Path, warm: bool) -> list[dict]:
    (store / "cwd").mkdir()
    env = child_env() | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "PREFECT_HOME": str(store / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TZ": "UTC",  # Prefect's log lines carry a bare HH:MM:SS.mmm: make it UTC, like its database
    }
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)  # always the temporary server and this store, whatever the caller's setup
    command = siamese_command() + ["train", *ORIGINAL_CONFIGURATION]
    runs = []
    for label in ("cold", "warm") if warm else ("cold",):
        print(f"siamese train ({label}: {'fresh' if label == 'cold' else 'same'} MLflow store and PREFECT_HOME) ...", end=" ", flush=True)
        load = os.getloadavg()[0]
        completed, spawned, ended, cpu = timed_run(command, cwd=store / "cwd", env=env)
        if completed.returncode != 0:
            fail(command, completed)
        run = flow_breakdown(completed.stdout, completed.stderr, spawned, ended, store)
        run |= {"cpu_seconds": cpu, "label": label, "command": "siamese train " + " ".join(ORIGINAL_CONFIGURATION), "load_average_before": load}
        runs.append(run)
        print(f"{run['wall_seconds']:.1f} s")
    return runs


def flow_breakdown(stdout: str, stderr: str, spawned: float, ended: float, store: Path) -> dict:
    """Split one `siamese train` run's wall time into the report's categories.

    Sources, each the run's own record of itself:
    - Process spawn and exit: clocked here around the subprocess.
    - "Starting temporary server" (Prefect's log line, stderr): the end of start-up and imports;
      the CLI imports everything before it calls the flow, and the flow engine then imports
      Prefect's server package (about 2 s) and starts the server.
    - Every task run's start and end time and the flow run's start and end time: Prefect's own
      task-run records in the temporary server's database (`PREFECT_HOME/prefect.db`), found
      through the MLflow run's `prefect.flow_run_id` tag. Falls back to the "Finished in state"
      log lines (a task then spans from the previous task's end) if the database cannot be read.
    - The MLflow run: `train/seconds` (time in `fit`) and `train/pairs_per_second`, a
      cross-check of the `train-model` task.
    Orchestration between tasks (flow run time not spent in any task) and flow end -> process
    exit ("Stopping temporary server" splits it: the flow engine's wrap-up, then stopping the
    server, the CLI's summary and interpreter teardown) are "other".
    """
    events = parse_log(stderr, spawned)
    run_id = re.search(r"MLflow run id:\s+(\w+)", stdout).group(1)
    mlflow_run = read_mlflow_run(run_id, store)
    source = "prefect database"
    try:
        flow_run, tasks = read_prefect_runs(store / "prefect" / "prefect.db", mlflow_run["prefect_flow_run_id"])
        if not spawned - 1 < flow_run["start"] < flow_run["end"] < ended + 1:
            raise ValueError("flow run times fall outside the process's lifetime")
    except (sqlite3.Error, ValueError, KeyError, TypeError) as error:
        source = f"log lines (database unusable: {error})"
        flow_run, tasks = runs_from_log(events)

    server_started = events["server_started"]
    rows = [
        {"part": "start-up + imports (spawn -> 'Starting temporary server')", "category": "start-up + imports",
         "seconds": server_started - spawned},
        {"part": "Prefect temporary server start -> flow run start", "category": "Prefect start",
         "seconds": flow_run["start"] - server_started},
    ]  # fmt: skip
    for task in tasks:
        rows.append({"part": f"task {task['name']}", "category": TASK_CATEGORIES.get(task["name"], "other"),
                     "seconds": task["end"] - task["start"]})  # fmt: skip
    in_tasks = sum(task["end"] - task["start"] for task in tasks)
    rows.append({"part": "Prefect orchestration between tasks", "category": "other",
                 "seconds": (flow_run["end"] - flow_run["start"]) - in_tasks})  # fmt: skip
    stopping = events.get("server_stopping", flow_run["end"])
    rows.append({"part": "flow run end -> 'Stopping temporary server'", "category": "other", "seconds": stopping - flow_run["end"]})
    rows.append({"part": "server stop, summary, interpreter exit", "category": "other", "seconds": ended - stopping})
    categories = {category: 0.0 for category in CATEGORIES}
    for row in rows:
        categories[row["category"]] += row["seconds"]
    return {
        "wall_seconds": ended - spawned,
        "source": source,
        "rows": rows,
        "categories": categories,
        "fit_seconds": mlflow_run["fit_seconds"],
        "flow_pairs_per_second": mlflow_run["pairs_per_second"],
        "train_pairs": mlflow_run["train_pairs"],
        "mlflow_run_id": run_id,
        "mlflow_run_seconds": mlflow_run["run_seconds"],
        "registered_version": mlflow_run["registered_version"],
    }


def parse_log(stderr: str, spawned: float) -> dict:
    """Times of Prefect's log lines: server start, and each task run's "Finished" line."""
    events: dict = {"finished": []}
    day = datetime.fromtimestamp(spawned, timezone.utc).date()
    for line in stderr.splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        clock = datetime.strptime(match.group(1), "%H:%M:%S.%f").time()
        moment = datetime.combine(day, clock, timezone.utc)
        if moment.timestamp() < spawned - 60:  # the run crossed midnight (UTC)
            moment += timedelta(days=1)
        stamp, message = moment.timestamp(), match.group(2)
        if "Starting temporary server" in message:
            events["server_started"] = stamp
        elif "Stopping temporary server" in message:
            events["server_stopping"] = stamp
        elif message.startswith("Flow run") and "Beginning flow run" in message:
            events["flow_began"] = stamp
        elif message.startswith("Flow run") and "Finished in state" in message:
            events["flow_finished"] = stamp
        elif task := re.match(r"Task run '([\w-]+)' - Finished in state", message):
            events["finished"].append((TASK_SUFFIX.sub("", task.group(1)), stamp))
    if "server_started" not in events:
        raise SystemExit("compare: no 'Starting temporary server' line: did the run use an existing Prefect API?")
    return events


def read_prefect_runs(database: Path, flow_run_id: str) -> tuple[dict, list[dict]]:
    """The flow run's and its task runs' start/end times from the temporary server's database."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:  # read only: never create it
        flow = connection.execute("SELECT start_time, end_time FROM flow_run WHERE id = ?", (flow_run_id,)).fetchone()
        if flow is None:
            raise ValueError(f"flow run {flow_run_id} not in {database}")
        tasks = connection.execute(
            "SELECT name, start_time, end_time FROM task_run WHERE flow_run_id = ? ORDER BY start_time", (flow_run_id,)
        ).fetchall()
    flow_run = {"start": utc_seconds(flow[0]), "end": utc_seconds(flow[1])}
    return flow_run, [{"name": TASK_SUFFIX.sub("", name), "start": utc_seconds(start), "end": utc_seconds(end)} for name, start, end in tasks]


def runs_from_log(events: dict) -> tuple[dict, list[dict]]:
    """Fallback: tasks run one after another, so each spans from the previous one's end."""
    flow_run = {"start": events["flow_began"], "end": events["flow_finished"]}
    tasks, previous = [], flow_run["start"]
    for name, finished in events["finished"]:
        tasks.append({"name": name, "start": previous, "end": finished})
        previous = finished
    return flow_run, tasks


def read_mlflow_run(run_id: str, store: Path) -> dict:
    from mlflow import MlflowClient  # only here: the throughput sides never see it

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    run = client.get_run(run_id)
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    return {
        "prefect_flow_run_id": run.data.tags.get("prefect.flow_run_id"),
        "fit_seconds": run.data.metrics.get("train/seconds"),
        "pairs_per_second": run.data.metrics.get("train/pairs_per_second"),
        "train_pairs": int(run.data.params.get("data.train_pairs", 0)),
        "run_seconds": (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None,
        "registered_version": versions[0].version if versions else None,
    }


def wall_comparison(baseline: dict, train_runs: list[dict]) -> dict:
    """The baseline's median-wall run in the same categories as `siamese train`."""
    baseline_categories = {category: 0.0 for category in CATEGORIES}
    baseline_categories["start-up + imports"] = baseline["startup_and_import_seconds"]
    baseline_categories["training"] = baseline["fit_seconds"]
    baseline_categories["other"] = baseline["setup_seconds"] + baseline["exit_seconds"]
    return {
        "baseline_wall_seconds": baseline["wall_seconds"],
        "baseline_cpu_seconds": baseline["cpu_seconds"],
        "baseline_categories": baseline_categories,
        "ratios": {run["label"]: run["wall_seconds"] / baseline["wall_seconds"] for run in train_runs},
    }


# ---------------------------------------------------------------------------------------------
# Imports


def import_breakdown() -> list[dict]:
    """What each import adds, in one fresh process (the project's modules from this checkout)."""
    code = "\n".join(
        [
            "import time, json",
            "marks = [time.perf_counter()]",
            *[f"{statement}\nmarks.append(time.perf_counter())" for _, statement in IMPORT_STEPS],
            "print(json.dumps([b - a for a, b in zip(marks, marks[1:])]))",
        ]
    )
    print("import breakdown ...", end=" ", flush=True)
    completed, spawned, ended, _ = timed_run([sys.executable, "-c", code], cwd=ROOT, env=child_env())
    wall = ended - spawned
    if completed.returncode != 0:
        fail(["-c", "<import steps>"], completed)
    seconds = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"{wall:.1f} s")
    steps = [{"step": label, "statement": statement, "seconds": value} for (label, statement), value in zip(IMPORT_STEPS, seconds)]
    steps.append({"step": "interpreter start-up and exit", "statement": "", "seconds": wall - sum(seconds)})
    return steps


# ---------------------------------------------------------------------------------------------
# Report


def print_report(results: dict) -> None:
    sides = results["throughput"]["sides"]
    repeats = results["repeats"]
    print(f"\n== Training throughput at identical settings (800 train / 200 validation pairs, 3 epochs, batch 64; {repeats} runs each) ==")
    print(f"{'':<26}" + "".join(f"{label:^36}" for label in RATES.values()) + f"{'median':>9}{'median':>9}")
    print(f"{'side':<26}" + f"{'median':>8}{'best':>7}{'ratio':>8}{'(best)':>8}{'':>5}" * len(RATES) + f"{'epoch1 s':>9}{'fit CPU s':>10}")
    for side, s in sides.items():
        cells = "".join(
            f"{s[key]['median']:>8.0f}{s[key]['best']:>7.0f}{s[key]['ratio_median']:>7.2f}x{'(' + format(s[key]['ratio_best'], '.2f') + 'x)':>8}{'':>5}"
            for key in RATES
        )
        print(f"{side:<26}{cells}{s['median_first_epoch_seconds']:>9.2f}{s['median_fit_cpu_seconds']:>10.2f}")
    for run in results["siamese_train"]:
        print(
            f"{'siamese train (' + run['label'] + ')':<26}{run['flow_pairs_per_second']:>8.0f}"
            f"   ({run['train_pairs']} train pairs, MLflow callback, task strategy; MLflow's train/pairs_per_second)"
        )
    print(
        "fit pairs/s = train pairs x epochs / fit wall time (tracing and validation included, as siamese.training.fit);"
        " steady = epochs 2-3 only\n(no tracing); pairs per CPU-s = the same pairs / CPU time of all threads during fit. "
        "ratio = median / baseline median, (best) = best / baseline best.\n'project' = siamese library (Masking layer, "
        "AUC metric); '+ task strategy' = also under the train-model task's distribution scope (a plain tf.device('/cpu:0') placement on a CPU)."
    )

    wall = results["wall"]
    runs = results["siamese_train"]
    print("\n== Wall time at the original configuration: baseline script vs siamese train ==")
    print(f"{'category':<34}{'baseline':>10}" + "".join(f"{'train ' + run['label']:>13}" for run in runs))
    for category in CATEGORIES:
        print(f"{category:<34}{wall['baseline_categories'][category]:>10.2f}" + "".join(f"{run['categories'][category]:>13.2f}" for run in runs))
    print(f"{'total wall (s)':<34}{wall['baseline_wall_seconds']:>10.2f}" + "".join(f"{run['wall_seconds']:>13.2f}" for run in runs))
    print(f"{'ratio to baseline':<34}{1:>9.2f}x" + "".join(f"{wall['ratios'][run['label']]:>12.2f}x" for run in runs))
    print(f"{'CPU s, whole process tree':<34}{wall['baseline_cpu_seconds']:>10.2f}" + "".join(f"{run['cpu_seconds']:>13.2f}" for run in runs))
    print(f"{'  of training: time in fit()':<34}{'':>10}" + "".join(f"{run['fit_seconds']:>13.2f}" for run in runs))
    print(f"{'  train pairs':<34}{800:>10}" + "".join(f"{run['train_pairs']:>13}" for run in runs))
    print(
        "baseline: the run with the median wall time of the throughput repeats; its 'other' is model/data set-up and exit.\n"
        f"siamese train breakdown source: {runs[0]['source']}; cold = fresh MLflow store + PREFECT_HOME."
    )
    print(f"\n-- siamese train, every part ({', '.join(run['label'] for run in runs)}; seconds) --")
    for index, row in enumerate(runs[0]["rows"]):
        values = "".join(f"{run['rows'][index]['seconds']:>9.2f}" if index < len(run["rows"]) else f"{'':>9}" for run in runs)
        print(f"{row['part']:<60}{row['category']:<30}{values}")

    if "imports" in results:
        print("\n-- imports, each step's addition in one fresh process (order of the siamese command) --")
        width = max(len(step["step"]) for step in results["imports"]) + 2
        for step in results["imports"]:
            print(f"{step['step']:<{width}}{step['seconds']:>7.2f} s")
        print(f"{'total':<{width}}{sum(step['seconds'] for step in results['imports']):>7.2f} s")
    print(f"\nload average (1 min) at start {results['machine']['load_average'][0]:.2f}, end {results['load_average_end'][0]:.2f}")


# ---------------------------------------------------------------------------------------------
# Helpers


def timed_run(command: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """Run to completion; return it, its spawn and end times, and the CPU seconds of its process tree.

    The CPU time counts every descendant that was waited for (the Prefect server included).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawned = time.time()
    completed = subprocess.run(command, capture_output=True, text=True, **kwargs)
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return completed, spawned, ended, cpu


def child_env() -> dict[str, str]:
    """The same environment for every side: quiet TensorFlow, this checkout importable."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"  # what the siamese command sets for itself
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("KERAS_BACKEND", None)  # the TensorFlow backend, as the original script ran
    return env


def siamese_command() -> list[str]:
    executable = Path(sys.executable).parent / "siamese"
    return [str(executable)] if executable.exists() else [sys.executable, "-m", "flows.cli"]


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()  # fmt: skip
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in ("tensorflow", "keras", "numpy", "prefect", "mlflow")},
        "git_commit": git_commit(),
        "load_average": os.getloadavg(),
    }


def describe_machine(info: dict) -> str:
    versions = ", ".join(f"{name} {value}" for name, value in info["versions"].items())
    return f"{info['cpu']} x{info['usable_cpus']} CPUs, Python {info['python']}, {versions}, commit {info['git_commit']}"


def git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) or None


def utc_seconds(text: str) -> float:
    """Prefect's database keeps naive UTC timestamps ('2026-01-01 12:00:00.123456')."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def fail(command: list[str], completed: subprocess.CompletedProcess) -> None:
    raise SystemExit(
        f"compare: {' '.join(map(str, command))} exited with {completed.returncode}\n"
        f"--- stdout (end) ---\n{completed.stdout[-3000:]}\n--- stderr (end) ---\n{completed.stderr[-3000:]}"
    )


if __name__ == "__main__":
    sys.exit(main())
