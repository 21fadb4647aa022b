"""Pipeline overhead: `siamese train` at the original configuration against the bare original script.

Both run as fresh processes, `--repeats` times each, alternating so that load drifting on a
shared machine hits both alike: `bench/original_script.py` (the original Keras example) and
`siamese train <original configuration>` from a temporary directory on its own MLflow store and
`PREFECT_HOME`. The first `siamese train` run starts on empty stores ("cold": database
migrations for Prefect's and MLflow's tables); the repeats reuse them ("warm", a developer's
usual case) and are the headline. Reported: wall time per side (median, min-max), the
difference `siamese train` - original script in seconds (the target: at most 8 s) and the ratio,
and where the time of the median warm run goes, from the run's own records (`flow_breakdown`).
Then, in one fresh process, what each import adds (unless `--quick`).

Prints tables and writes everything as JSON to `bench/results/` (git-ignored).

Run: .venv/bin/python bench/overhead.py [--repeats 3] [--quick]
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
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"

# The original script's configuration, as the project's command line spells it (flows/cli.py).
ORIGINAL_CONFIGURATION = [
    "--data", "random", "--head", "concat", "--num-pairs", "1000", "--timesteps", "10", "--epochs", "3", "--batch-size", "64",
    "--learning-rate", "0.001",
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
    "Prefect API start (not hidden by imports)",
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
    # Imported by the CLI while the Prefect API starts (tasks.store.import_store_backend).
    ("MLflow's SQL store (sqlalchemy, alembic)", "import mlflow.store.tracking.sqlalchemy_store, mlflow.store.model_registry.sqlalchemy_store"),
]
TARGET_SECONDS = 8.0  # issue 6: `siamese train` at most this much longer than the original script
TASK_SUFFIX = re.compile(r"-[0-9a-f]{3}$")  # Prefect's task-run names: "<task>-<3 hex digits>"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="warm `siamese train` runs and original-script runs (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, no import breakdown (~1 min)")
    parser.add_argument("--output", type=Path, help="JSON file to write (default bench/results/overhead-<time>.json)")
    args = parser.parse_args()
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")

    started = time.time()
    results: dict = {"machine": machine(), "started": iso(started), "repeats": repeats, "quick": args.quick}
    print(f"machine: {describe_machine(results['machine'])}\n")
    results |= run_sides(repeats)
    results["overhead"] = overhead(results["baseline"], results["siamese_train"])
    if not args.quick:
        results["imports"] = import_breakdown()
    results["finished"] = iso(time.time())
    results["bench_seconds"] = time.time() - started
    results["load_average_end"] = os.getloadavg()

    print_report(results)
    output = args.output or RESULTS / f"overhead-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwhole benchmark: {results['bench_seconds']:.0f} s; results written to {display_path(output)}")
    return 0


def run_sides(repeats: int) -> dict[str, list[dict]]:
    """A cold `siamese train`, then `repeats` rounds of (original script, warm `siamese train`), alternating first."""
    with tempfile.TemporaryDirectory(prefix="bench-siamese-") as directory:
        store = Path(directory)
        (store / "cwd").mkdir()
        train_runs = [run_siamese_train(store, "cold")]
        baseline_runs = []
        for repeat in range(repeats):
            order = ("baseline", "warm") if repeat % 2 == 0 else ("warm", "baseline")
            for side in order:
                if side == "baseline":
                    baseline_runs.append(run_original_script())
                else:
                    train_runs.append(run_siamese_train(store, "warm"))
    return {"baseline": baseline_runs, "siamese_train": train_runs}


def run_original_script() -> dict:
    """The original script from a scratch directory; its last stdout line is its JSON report."""
    print("original script ...", end=" ", flush=True)
    arguments = [str(BENCH / "original_script.py"), "--seed", "0"]
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        load = os.getloadavg()[0]
        completed, spawned, ended, cpu = timed_run([sys.executable, *arguments], cwd=directory, env=child_env())
    if completed.returncode != 0:
        fail(arguments, completed)
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    report |= {
        "wall_seconds": ended - spawned,
        "cpu_seconds": cpu,
        "load_average_before": load,
        "categories": {
            "start-up + imports": report["imported"] - spawned,  # interpreter start-up and keras
            "training": report["fit_seconds"],
            # model, compile and data set-up; process exit
            "other": report["setup_seconds"] + ended - report["fit_ended"],
        },
    }
    print(f"{report['wall_seconds']:.1f} s (load {load:.2f})")
    return report


def run_siamese_train(store: Path, label: str) -> dict:
    """`siamese train <original configuration>` on the benchmark's MLflow store and PREFECT_HOME."""
    env = child_env() | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "PREFECT_HOME": str(store / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)  # always a temporary Prefect API and this store, whatever the caller's setup
    command = siamese_command() + ["train", *ORIGINAL_CONFIGURATION]
    print(f"siamese train ({label}) ...", end=" ", flush=True)
    load = os.getloadavg()[0]
    completed, spawned, ended, cpu = timed_run(command, cwd=store / "cwd", env=env)
    if completed.returncode != 0:
        fail(command, completed)
    run = flow_breakdown(completed.stdout, completed.stderr, spawned, ended, store)
    run |= {"cpu_seconds": cpu, "label": label, "load_average_before": load}
    print(f"{run['wall_seconds']:.1f} s (load {load:.2f})")
    return run


def flow_breakdown(stdout: str, stderr: str, spawned: float, ended: float, store: Path) -> dict:
    """Split one `siamese train` run's wall time into the report's categories.

    Sources, each the run's own record of itself:
    - Process spawn and exit: clocked here around the subprocess.
    - The flow run's and every task run's start and end: Prefect's own records in the temporary
      API's database (`PREFECT_HOME/prefect.db`), found through the MLflow run's
      `prefect.flow_run_id` tag. Spawn -> flow run start is interpreter start-up and imports,
      while the Prefect API boots in its own process, and any wait for the API after the
      imports, which the command reports ("waited X s for the Prefect API") when it is 1 s or more.
    - The MLflow run: `train/seconds` (time in `fit`) and `train/pairs_per_second`, a
      cross-check of the `train-model` task.
    Orchestration between tasks (flow run time not spent in any task) and flow end -> process
    exit (the flow engine's wrap-up, flushing logs, stopping the API, the summary, exit) are "other".
    """
    run_id = re.search(r"MLflow run id:\s+(\w+)", stdout).group(1)
    mlflow_run = read_mlflow_run(run_id, store)
    flow_run, tasks = read_prefect_runs(store / "prefect" / "prefect.db", mlflow_run["prefect_flow_run_id"])
    waited = re.search(r"waited ([\d.]+) s for the Prefect API", stderr)
    waited = float(waited.group(1)) if waited else 0.0
    rows = [
        {"part": "spawn -> flow run start, less the wait below (the Prefect API boots meanwhile)",
         "category": "start-up + imports", "seconds": flow_run["start"] - spawned - waited},
        {"part": "waiting for the Prefect API after the imports", "category": "Prefect API start (not hidden by imports)",
         "seconds": waited},
    ]  # fmt: skip
    for task in tasks:
        rows.append({"part": f"task {task['name']}", "category": TASK_CATEGORIES.get(task["name"], "other"),
                     "seconds": task["end"] - task["start"]})  # fmt: skip
    in_tasks = sum(task["end"] - task["start"] for task in tasks)
    rows.append({"part": "Prefect orchestration between tasks", "category": "other",
                 "seconds": (flow_run["end"] - flow_run["start"]) - in_tasks})  # fmt: skip
    rows.append({"part": "flow run end -> exit (logs flushed, API stopped, summary)", "category": "other", "seconds": ended - flow_run["end"]})
    categories = {category: 0.0 for category in CATEGORIES}
    for row in rows:
        categories[row["category"]] += row["seconds"]
    return {
        "wall_seconds": ended - spawned,
        "rows": rows,
        "categories": categories,
        "fit_seconds": mlflow_run["fit_seconds"],
        "flow_pairs_per_second": mlflow_run["pairs_per_second"],
        "train_pairs": mlflow_run["train_pairs"],
        "mlflow_run_id": run_id,
        "registered_version": mlflow_run["registered_version"],
    }


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


def overhead(baseline_runs: list[dict], train_runs: list[dict]) -> dict:
    """Median and range of each side's wall time; `siamese train` (warm) minus the original script."""
    warm = [run["wall_seconds"] for run in train_runs if run["label"] == "warm"]
    baseline = [run["wall_seconds"] for run in baseline_runs]
    difference = statistics.median(warm) - statistics.median(baseline)
    return {
        "baseline": _stats(baseline),
        "warm": _stats(warm),
        "cold": _stats([run["wall_seconds"] for run in train_runs if run["label"] == "cold"]),
        "difference_seconds": difference,
        "ratio": statistics.median(warm) / statistics.median(baseline),
        "target_seconds": TARGET_SECONDS,
        "met": difference <= TARGET_SECONDS,
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one for an even count)."""
    return sorted(runs, key=lambda run: run["wall_seconds"])[(len(runs) - 1) // 2]


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
    summary = results["overhead"]
    print(f"\n== Wall time at the original configuration ({results['repeats']} runs each; seconds) ==")
    print("| side | median | min-max |")
    print("| --- | ---: | ---: |")
    for label, key in (("original script", "baseline"), ("`siamese train` warm", "warm"), ("`siamese train` cold (first run)", "cold")):
        stats = summary[key]
        print(f"| {label} | {stats['median']:.2f} | {stats['min']:.2f}-{stats['max']:.2f} |")
    verdict = "met" if summary["met"] else "NOT met"
    print(
        f"\nsiamese train (warm) - original script: {summary['difference_seconds']:+.2f} s (target <= {TARGET_SECONDS:g} s: {verdict}); "
        f"ratio {summary['ratio']:.2f}x"
    )

    baseline, warm = median_run(results["baseline"]), median_run([run for run in results["siamese_train"] if run["label"] == "warm"])
    cold = results["siamese_train"][0]
    print("\n== Where the time goes: median runs (seconds) ==")
    print("| category | original script | `siamese train` warm | `siamese train` cold |")
    print("| --- | ---: | ---: | ---: |")
    for category in CATEGORIES:
        print(f"| {category} | {baseline['categories'].get(category, 0.0):.2f} | {warm['categories'][category]:.2f} | {cold['categories'][category]:.2f} |")
    print(f"| **total wall** | **{baseline['wall_seconds']:.2f}** | **{warm['wall_seconds']:.2f}** | **{cold['wall_seconds']:.2f}** |")
    print(f"| CPU s, whole process tree | {baseline['cpu_seconds']:.2f} | {warm['cpu_seconds']:.2f} | {cold['cpu_seconds']:.2f} |")
    print(f"| of training: time in `fit` | {baseline['fit_seconds']:.2f} | {warm['fit_seconds']:.2f} | {cold['fit_seconds']:.2f} |")
    print(f"| training pairs | {baseline['train_pairs']} | {warm['train_pairs']} | {cold['train_pairs']} |")

    print("\n-- every part of the median warm and the cold `siamese train` run (seconds) --")
    print("| part | category | warm | cold |")
    print("| --- | --- | ---: | ---: |")
    cold_rows = {row["part"]: row["seconds"] for row in cold["rows"]}
    for row in warm["rows"]:
        cold_value = cold_rows.get(row["part"])
        print(f"| {row['part']} | {row['category']} | {row['seconds']:.2f} | {'' if cold_value is None else format(cold_value, '.2f')} |")

    if "imports" in results:
        print("\n-- imports, each step's addition in one fresh process (order of the siamese command) --")
        print("| step | seconds |")
        print("| --- | ---: |")
        for step in results["imports"]:
            print(f"| {step['step']} | {step['seconds']:.2f} |")
        print(f"| **total** | **{sum(step['seconds'] for step in results['imports']):.2f}** |")
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
