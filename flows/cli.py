"""The `siamese` command line.

Only argparse and the config module load before a command runs, so `siamese --help` answers at
once; TensorFlow, Prefect and MLflow are imported when training starts.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from siamese.config import (
    Backbone,
    ConfigError,
    DataMode,
    DevicePreference,
    Head,
    ImageSource,
    ModelKind,
    Precision,
    Quoting,
    SearchSpaceError,
    TableFormat,
    Task,
    VisionHead,
    load_config,
)

# Command-line flag -> config key. Everything else is reachable with --set SECTION.FIELD=VALUE.
FLAG_TO_KEY = {
    "epochs": "training.epochs",
    "batch_size": "training.batch_size",
    "learning_rate": "training.learning_rate",
    "patience": "training.patience",
    "devices": "training.devices",
    "precision": "training.precision",
    "num_pairs": "data.num_pairs",
    "timesteps": "data.timesteps",
    "units": "model.units",
    "head": "model.head",
    "seed": "seed",
    "model": "kind",
    "task": "data.task",
    "backbone": "model.backbone",
    "image_size": "data.image_size",
    "left_column": "data.left_column",
    "right_column": "data.right_column",
    "label_column": "data.label_column",
    "threshold": "data.threshold",
    "drop_invalid_rows": "data.drop_invalid_rows",
    "split_column": "data.split_column",
    "format": "data.format",
    "quoting": "data.quoting",
}
SWITCHES = {"drop_invalid_rows"}  # flags that take no value: `--drop-invalid-rows` sets the key to true
# Config keys as messages name them -> the flag that sets them, e.g. `data.left_column` -> `--left-column`,
# `data.threshold = 3.5` -> `--threshold 3.5`, `data.drop_invalid_rows = true` -> `--drop-invalid-rows`.
_KEY_PATTERN = re.compile(
    r"(?<![\w.-])(" + "|".join(re.escape(key) for key in FLAG_TO_KEY.values() if "." in key) + r")(?![\w])( = ([^\s;,)]+))?"
)
_FLAG_OF_KEY = {key: "--" + flag.replace("_", "-") for flag, key in FLAG_TO_KEY.items()}
_SWITCH_KEYS = {FLAG_TO_KEY[flag] for flag in SWITCHES}

PREFECT_STARTUP_TIMEOUT_SECONDS = 120
WAIT_WORTH_SAYING_SECONDS = 1.0
# Where Prefect reports a failed flow or task run: at ERROR, with the traceback, the message repeated in each report.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
FAILED_STATES = ("Finished in state Failed", "Finished in state Crashed")
# A clause of a message (between semicolons or line breaks) longer than this is a value, not prose (a
# file's 5 MB header line): it is cut to MESSAGE_VALUE_SHOWN characters.
MESSAGE_CLAUSE_LIMIT, MESSAGE_VALUE_SHOWN = 400, 200
_LONG_CLAUSE = re.compile(rf"[^;\n]{{{MESSAGE_CLAUSE_LIMIT + 1},}}")
# Exit codes. retrain: 0 also when the gate rightly kept the champion. Interrupted: 128 + the signal's
# number, as a shell reports a process a signal ended (130 for SIGINT, 143 for SIGTERM).
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_REGRESSION = 0, 1, 2, 3
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# An interrupted command that has not finished cleaning up after this long exits anyway: the
# bound of "stops within seconds" (on Linux its temporary Prefect API dies with it).
INTERRUPT_GRACE_SECONDS = 15.0
# What an interrupted command leaves, for its one line.
INTERRUPTED_OUTCOME = {
    "train": "the MLflow run, if one started, is marked FAILED and nothing is registered",
    "retrain": "the MLflow run, if one started, is marked FAILED and the champion is unchanged",
    "score": "no output was written",
    "dedupe": "no output was written",
    "embed": "no output was written",
    "serve": "no longer serving",
    "tune": "the sweep's MLflow runs, and any training run it started, are marked FAILED; the champion is unchanged",
}
DEFAULT_TRIALS = 16  # enough for TPE to improve on its random start (BENCHMARKS.md, "Sweeps"); each trial stops early

ORIGINAL_RUN = (
    "siamese train --data random --head concat --num-pairs 1000 --timesteps 10 --epochs 3 --batch-size 64 --learning-rate 0.001"
)


def run() -> None:
    """The `siamese` program: run the command, then exit without the interpreter's teardown.

    Once TensorFlow, Keras, MLflow and Prefect are loaded, freeing every module at exit takes
    2-3 s and does nothing a finished command needs. Exit the way the interpreter would, up to
    that point: wait for non-daemon threads, run the `atexit` handlers (Prefect's log and event
    workers flush, MLflow ends its runs, logging flushes), flush the output, then leave.
    SIGINT and SIGTERM interrupt the command (`Interrupted`) instead of killing it on the spot.
    """
    for number in INTERRUPT_SIGNALS:
        signal.signal(number, _interrupt)
    code = main()
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run a `siamese` command; returns its exit code (EXIT_*, or 128 + the signal that interrupted it)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run_command(args, parser)
    except Interrupted as interrupt:  # everything it started has been stopped and cleaned up on the way out
        print(f"\nsiamese: interrupted by {interrupt.name}: {INTERRUPTED_OUTCOME.get(args.command, 'stopped')}", file=sys.stderr)
        return 128 + interrupt.number


def _run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    file_commands = {"score": _score, "dedupe": _dedupe, "embed": _embed}
    if args.command in file_commands:
        return file_commands[args.command](args, parser)
    if args.command == "serve":
        return _serve(args)
    if args.command == "ui":
        return _ui(args)
    if args.command is None:
        parser.print_help()
        return EXIT_INVALID
    if args.command == "tune":
        _check_sweep_arguments(args, parser)
    try:
        config = load_config(args.config, _overrides(args, parser))
        space = _search_space(args, config) if args.command == "tune" else None
    except ConfigError as error:
        if isinstance(error, SearchSpaceError):  # it names keys of [tune] as written there, not as flags
            print(f"siamese: invalid search space: {_cut_long_clauses(str(error))}", file=sys.stderr)
        else:
            print(f"siamese: invalid configuration: {for_console(str(error))}", file=sys.stderr)
        return EXIT_INVALID
    fail_on_regression = args.command in ("retrain", "tune") and args.fail_on_regression

    def run_flow():
        if args.command == "tune":
            from flows.tune import tune_flow

            return tune_flow(
                config=config,
                space=space,
                trials=args.trials,
                parallel=args.parallel,
                dask_address=args.dask_address,
                study_storage=args.study_storage,
                best_config_path=args.best_config.resolve(),
                work_dir=args.work_dir,
            )
        from flows.retrain import retrain_flow
        from flows.train import train_flow

        flow = retrain_flow if args.command == "retrain" else train_flow
        return flow(config=config, work_dir=args.work_dir, fresh=args.fresh)

    return _train(args.command, config, run_flow, fail_on_regression=fail_on_regression, verbose=args.verbose)


def _check_sweep_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from siamese.tuning import check_sweep_size

    try:
        check_sweep_size(args.trials, args.parallel)
    except ConfigError as error:
        parser.error(f"--{error}")  # its message starts with the argument's name


def _search_space(args: argparse.Namespace, config) -> dict | None:
    """The config file's `[tune]` table, checked against the config before anything starts (None: the family's space)."""
    from siamese.config import TUNE_TABLE, read_config_file
    from siamese.tuning import search_space_for

    table = read_config_file(args.config).get(TUNE_TABLE) if args.config is not None else None
    source = f"[{TUNE_TABLE}] of {args.config}"
    search_space_for(config, table, source)
    return table


def _train(command: str, config, run_flow: Callable[[], dict], fail_on_regression: bool, verbose: bool) -> int:
    """Run a flow that trains (train, retrain, tune) on a Prefect API, print its result; exit codes as documented."""
    _quiet_start()
    from flows.temporary_api import PrefectApiError, temporary_prefect_api

    # The API boots while TensorFlow and MLflow import.
    with temporary_prefect_api() as api, _failure_reports(command, verbose) as reports:
        from flows.retrain import Outcome
        from siamese.data.image_pairs import ImageDataError
        from siamese.data.tables import PairFileError
        from tasks.registry import IncompatibleVersionError
        from tasks.store import import_store_backend

        import_store_backend()  # free while the API is still starting, and needed first thing in the flow
        try:
            _wait_for(api)
            result = run_flow()
        except PrefectApiError as error:
            print(f"siamese: {for_console(str(error))}", file=sys.stderr)
            return EXIT_FAILED
        except (PairFileError, ImageDataError) as error:  # stopped before an MLflow run existed
            print(f"\nsiamese: invalid data: {for_console(str(error))}{reports.where()}", file=sys.stderr)
            return EXIT_INVALID
        except ConfigError as error:  # a plan the data or the disk cannot carry, found before any work
            print(f"\nsiamese: invalid configuration: {for_console(str(error))}{reports.where()}", file=sys.stderr)
            return EXIT_INVALID
        except IncompatibleVersionError as error:  # trained, then refused by the gate and taken back
            print(f"\nsiamese: incompatible model: {for_console(str(error))}{reports.where()}", file=sys.stderr)
            return EXIT_INVALID
        except Exception as error:  # the flow run already recorded the failure; say what it was
            what = "sweep" if command == "tune" else "training"
            print(f"\nsiamese: {what} failed: {for_console(str(error))}{reports.where()}", file=sys.stderr)
            return EXIT_FAILED
    if command == "tune":
        _print_sweep(result)
    _print_result(result, config)
    if fail_on_regression and result["outcome"] is Outcome.REGRESSION:
        print(f"siamese: regression (--fail-on-regression): {result['gate'].reason}", file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK


def _print_sweep(result: dict) -> None:
    from tasks.tuning import state_counts

    outcomes = result["trials"]
    counts = ", ".join(f"{count} {state}" for state, count in state_counts(outcomes).items())
    print(
        f"\nSweep finished: {len(outcomes)} trials ({counts}); the best, trial {result['best_trial']}, "
        f"reached {result['best_value']:.4f} on the validation split.\n"
        f"  sweep MLflow run:  {result['sweep_run_id']} (one nested run per trial)\n"
        f"  best config:       {result['best_config_path']}"
    )


def _print_result(result: dict, config) -> None:
    from siamese.families import ModelFormat, family_of
    from tasks.store import ui_command

    registered, gate = result["registered"], result["gate"]
    aliases = ", ".join(registered["aliases"])
    lines = [
        "\nTraining finished.",
        f"  {_headline(result['test_metrics'])}",
        f"  MLflow run id:     {result['run_id']}",
        f"  registered model:  {registered['name']} version {registered['version']} (alias {aliases})",
    ]
    if gate is not None:
        lines.append(f"  gate:              {gate.decision}: {gate.reason}")
    if "outcome" in result:
        lines.append(f"  outcome:           {result['outcome']}")
    lines.append(f"  open the MLflow UI: {ui_command()}")
    if family_of(config.kind).model_format is ModelFormat.RAW_TEXT:  # the batch scoring flow takes it
        lines.append(
            f"  score a file:      siamese score --model models:/{registered['name']}/{registered['version']} "
            "--input pairs.csv --output scores.parquet"
        )
    print("\n".join(lines))


def _check_threshold(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A finite `--threshold`, or none; its range depends on the model, which the flow checks."""
    if args.threshold is not None and not math.isfinite(args.threshold):
        parser.error(f"--threshold must be a number, got {args.threshold}")


def _score(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _check_threshold(args, parser)

    def score():
        from flows.score import score_flow

        return score_flow(
            model_uri=args.model,
            input_path=args.input.resolve(),
            output_path=args.output.resolve(),
            left_column=args.left_column,
            right_column=args.right_column,
            chunk_rows=args.chunk_rows,
            threshold=args.threshold,
        )

    return _file_flow(args, parser, "score", score, _report_scores)


def _report_scores(args: argparse.Namespace, summary: Any) -> None:
    print(f"\nScored {summary.scored:,} of {summary.rows:,} rows into {args.output} in {summary.seconds:.1f} s.")
    print(f"  is_similar: {summary.threshold.describe()}")
    if summary.unscorable_count:
        reasons = "; ".join(f"{reason}: {count:,}" for reason, count in summary.unscorable.items())
        count = summary.unscorable_count
        print(
            f"  {count:,} {'row' if count == 1 else 'rows'} could not be scored ({summary.unscorable_rows}; {reasons}): "
            "their `similarity` and `is_similar` are empty and `error` says why."
        )


def _dedupe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _check_threshold(args, parser)
    if args.neighbours < 1:
        parser.error(f"--neighbours must be >= 1, got {args.neighbours}")
    if args.max_neighbours is not None and args.max_neighbours < args.neighbours:
        parser.error(f"--max-neighbours ({args.max_neighbours}) must be >= --neighbours ({args.neighbours})")
    if args.against is not None and not args.against.exists():
        parser.error(f"--against {args.against}: no such file or folder (an earlier dedupe's output, or its .index folder)")

    def dedupe():
        from flows.dedupe import dedupe_flow

        return dedupe_flow(
            model_uri=args.model,
            input_path=args.input.resolve(),
            output_path=args.output.resolve(),
            text_column=args.text_column,
            against=None if args.against is None else args.against.resolve(),
            neighbours=args.neighbours,
            max_neighbours=args.max_neighbours,
            threshold=args.threshold,
            grouping=args.grouping,
            chunk_rows=args.chunk_rows,
        )

    return _file_flow(args, parser, "dedupe", dedupe, lambda args, summary: print("\n" + "\n".join(summary.lines())))


def _embed(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    def embed():
        from flows.dedupe import embed_flow

        return embed_flow(args.model, args.input.resolve(), args.output.resolve(), args.text_column, args.chunk_rows)

    return _file_flow(args, parser, "embed", embed, _report_embeddings, output_suffixes=(".parquet", ".pq"))


def _report_embeddings(args: argparse.Namespace, summary: Any) -> None:
    print(f"\nEmbedded {summary.embedded:,} of {summary.rows:,} rows ({summary.dimensions} dimensions) into {args.output} in {summary.seconds:.1f} s.")
    if summary.unencodable:
        reasons = "; ".join(f"{reason}: {count:,}" for reason, count in summary.unencodable.items())
        print(f"  rows that could not be encoded ({reasons}) have an empty `embedding` and `error` says why.")


def _file_flow(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    verb: str,
    run_flow: Callable[[], Any],
    report: Callable[[argparse.Namespace, Any], None],
    output_suffixes: tuple[str, ...] | None = None,
) -> int:
    """Run a flow that reads `--input` and writes `--output` (score, dedupe, embed), then `report` its summary.

    The paths are checked before anything starts (one line to read, the input left as it was);
    a bad file, model or path is exit 2, anything else 1, each in one line. `output_suffixes`:
    the output formats the command writes (default: every table format).
    """
    if not args.input.is_file():
        parser.error(f"--input {args.input}: no such file")
    from siamese.data.tables import TABLE_SUFFIXES
    from tasks.scoring import OutputPathError, ThresholdError, check_output_path

    try:
        check_output_path(args.input.resolve(), args.output.resolve())
    except OutputPathError as error:
        print(f"siamese: cannot {verb}: {for_console(str(error))}", file=sys.stderr)
        return EXIT_INVALID
    suffixes = output_suffixes or TABLE_SUFFIXES
    if args.output.suffix.lower() not in suffixes:
        parser.error(f"--output {args.output}: use a {', '.join(suffixes)} file")
    if args.chunk_rows < 1:
        parser.error(f"--chunk-rows must be >= 1, got {args.chunk_rows}")
    _quiet_start()
    from flows.temporary_api import PrefectApiError, temporary_prefect_api

    with temporary_prefect_api() as api, _failure_reports(args.command, args.verbose) as reports:
        from siamese.data.tables import PairFileError
        from siamese.embedding import EmbeddingError
        from tasks.dedupe import CollectionError
        from tasks.registry import ScoringModelError

        try:
            _wait_for(api)
            summary = run_flow()
        except PrefectApiError as error:
            print(f"siamese: {for_console(str(error))}", file=sys.stderr)
            return EXIT_FAILED
        except (PairFileError, ScoringModelError, ThresholdError, OutputPathError, EmbeddingError, CollectionError) as error:
            print(f"\nsiamese: cannot {verb}: {for_console(str(error))}{reports.where()}", file=sys.stderr)
            return EXIT_INVALID
        except Exception as error:
            print(f"\nsiamese: {verb} failed: {for_console(str(error))}{reports.where()}", file=sys.stderr)
            return EXIT_FAILED
    report(args, summary)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    """Serve the scheduled deployments until interrupted: runs fire in this process.

    Without PREFECT_API_URL it serves on a temporary API (as Prefect would start one itself), in
    a session of its own: on Ctrl-C it is still there for the runner to pause the schedules and
    record its runs' end, so the first Ctrl-C stops the command at once.
    """
    try:
        config = load_config(args.config, {})
    except ConfigError as error:
        print(f"siamese: invalid configuration: {for_console(str(error))}", file=sys.stderr)
        return EXIT_INVALID
    _quiet_start()
    from flows.temporary_api import PrefectApiError, temporary_prefect_api

    # A service's failures stay in its log, credentials masked.
    with temporary_prefect_api() as api, _failure_reports(args.command, verbose=True):
        from prefect import serve

        from flows.schedules import scheduled_deployments

        try:
            _wait_for(api)
        except PrefectApiError as error:
            print(f"siamese: {for_console(str(error))}", file=sys.stderr)
            return EXIT_FAILED
        try:
            serve(*scheduled_deployments(config, timezone=args.timezone))  # returns when Prefect's runner catches Ctrl-C
        except SystemExit:  # Prefect's runner stops on SIGTERM and exits 0
            raise Interrupted(signal.SIGTERM) from None
    if _signals_received:
        raise Interrupted(_signals_received[0])
    return EXIT_OK


def _ui(args: argparse.Namespace) -> int:
    """Replace this process with the MLflow UI on the project's store, on loopback only."""
    from tasks.store import mask_credentials, tracking_uri

    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"the runs are on a tracking server: open {mask_credentials(uri)}")
        return EXIT_OK
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no job runner processes for a local UI
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"]
    print(f"MLflow UI on http://127.0.0.1:{args.port} (store {uri}); Ctrl-C stops it", flush=True)
    os.execv(mlflow, command)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the command: raised in the main thread, it unwinds through every cleanup.

    A KeyboardInterrupt, so that Prefect records its flow and task runs as crashed and the
    training flow ends its MLflow run FAILED with reason "interrupted".
    """

    def __init__(self, number: int) -> None:
        self.number, self.name = number, signal.Signals(number).name
        super().__init__(self.name)


_signals_received: list[int] = []


def _interrupt(number: int, frame: object) -> None:
    """The handler of SIGINT and SIGTERM: the first interrupts; later ones wait for the clean-up it started.

    Inside a flow Prefect replaces the SIGTERM handler with its own, and calls this one again
    after recording the flow run's crash.
    """
    _signals_received.append(number)
    if len(_signals_received) == 1:
        deadline = threading.Timer(INTERRUPT_GRACE_SECONDS, _stop_now, (number,))
        deadline.daemon = True  # `run` does not wait for it
        deadline.start()
        raise Interrupted(number)


def _stop_now(number: int) -> None:
    """Exit at once: the clean-up an interrupt started is stuck (a dead tracking server, a hung library call)."""
    name = signal.Signals(number).name
    print(f"\nsiamese: interrupted by {name}; clean-up did not finish within {INTERRUPT_GRACE_SECONDS:g} s, stopped", file=sys.stderr)
    sys.stderr.flush()
    os._exit(128 + number)


def _wait_for(api) -> None:
    waited = api.wait_until_ready()
    if waited >= WAIT_WORTH_SAYING_SECONDS:  # a first start on a new PREFECT_HOME migrates its database
        print(f"siamese: waited {waited:.1f} s for the Prefect API to start", file=sys.stderr)


def in_flags(message: str) -> str:
    """A library or config message (which names config keys) as this command line speaks: keys with a flag become the flag."""
    def flag(match: re.Match) -> str:
        key, value = match.group(1), match.group(3)
        if value is None or key in _SWITCH_KEYS:
            return _FLAG_OF_KEY[key]
        return f"{_FLAG_OF_KEY[key]} {value}"

    return _KEY_PATTERN.sub(flag, message)


def for_console(message: str) -> str:
    """An error message as the command prints it: in flags, credentials in URIs masked, overlong values cut.

    A clause longer than MESSAGE_CLAUSE_LIMIT is cut to its first MESSAGE_VALUE_SHOWN characters,
    with an ellipsis and its length: a file whose header line is 5 MB long is named, not echoed.
    """
    from tasks.store import mask_credentials

    return _cut_long_clauses(mask_credentials(in_flags(message)))


def _cut_long_clauses(text: str) -> str:
    def cut(match: re.Match) -> str:
        return f"{match.group()[:MESSAGE_VALUE_SHOWN]}… ({len(match.group()):,} characters)"

    return _LONG_CLAUSE.sub(cut, text)


class _CutFormatter(logging.Formatter):
    """Formats a record with overlong values cut, as in the command's messages: a debug log stays readable."""

    def format(self, record: logging.LogRecord) -> str:
        return _cut_long_clauses(super().format(record))


class _FailureLog:
    """A debug log file for Prefect's failure reports, created only when one is written."""

    def __init__(self, command: str) -> None:
        self.path = Path(tempfile.gettempdir()) / f"siamese-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        self.handler = logging.FileHandler(self.path, mode="w", encoding="utf-8", delay=True)
        self.handler.setLevel(logging.ERROR)
        self.handler.setFormatter(_CutFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def where(self) -> str:
        """Where the tracebacks are, to end the command's message; empty when none were written."""
        return f" (tracebacks: {self.path}; --verbose prints them)" if self.handler.stream is not None else ""

    def discard(self) -> None:
        """Remove the log: an interrupted command's crash reports say nothing its one line does not."""
        self.handler.close()
        self.path.unlink(missing_ok=True)


class _NoFailureLog:
    """With --verbose, the failure reports stay on the console: nothing to point to."""

    def where(self) -> str:
        return ""

    def discard(self) -> None:
        pass


@contextmanager
def _failure_reports(command: str, verbose: bool) -> Iterator[_FailureLog | _NoFailureLog]:
    """Mask credentials in every log record; unless `verbose`, keep Prefect's failure reports off the console.

    For one bad data file Prefect logs about 90 lines (the failed task's and flow's tracebacks,
    each repeating the error) before the command's own one-line message. They go to a debug log
    file instead, which that message names. Masking covers what Prefect also sends to its API
    (stored in its database) and the debug log.
    """
    import prefect.main  # noqa: F401  (configures Prefect's log handlers when it loads: the filters go on after)
    from prefect.logging.handlers import PrefectConsoleHandler

    root, run_loggers = logging.getLogger(), [logging.getLogger(name) for name in RUN_LOGGERS]
    reports = _NoFailureLog() if verbose else _FailureLog(command)
    added = [] if verbose else [(logger, reports.handler) for logger in run_loggers]
    for logger, handler in added:
        logger.addHandler(handler)
    masked = {handler for logger in (root, *run_loggers) for handler in logger.handlers}
    consoles = [] if verbose else [handler for handler in root.handlers if isinstance(handler, PrefectConsoleHandler)]
    for handler in masked:
        handler.addFilter(_mask_record)
    for handler in consoles:
        handler.addFilter(_not_a_run_failure)
    try:
        yield reports
    except Interrupted:
        reports.discard()
        raise
    finally:
        for handler in consoles:
            handler.removeFilter(_not_a_run_failure)
        for handler in masked:
            handler.removeFilter(_mask_record)
        for logger, handler in added:
            logger.removeHandler(handler)
            handler.close()


def _mask_record(record: logging.LogRecord) -> bool:
    """Mask credentials in a record's message and traceback, for every handler after this one too."""
    from tasks.store import mask_credentials

    record.msg, record.args = mask_credentials(record.getMessage()), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_credentials(record.exc_text)
    return True


def _not_a_run_failure(record: logging.LogRecord) -> bool:
    """False for Prefect's reports of a failed run: its errors, and a failed flow's last line (logged at INFO)."""
    if not record.name.startswith(RUN_LOGGERS):
        return True
    return record.levelno < logging.ERROR and not record.getMessage().startswith(FAILED_STATES)


def _quiet_start() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out
    # Prefect's temporary API server gives up after 20 s, which a first start (database
    # migrations) on a busy 2-core machine can exceed; a user's own setting still wins.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(PREFECT_STARTUP_TIMEOUT_SECONDS))


def _headline(metrics: dict[str, float]) -> str:
    """The test metrics a user looks at first: AUC for similarity, errors for regression."""
    if "roc_auc" in metrics:
        return f"test AUC {metrics['roc_auc']:.3f}, accuracy {metrics['accuracy']:.3f}"
    return (
        f"test MAE {metrics['mae']:.3g} (predicting the mean: {metrics['baseline_mae']:.3g}), RMSE {metrics['rmse']:.3g}, "
        f"Pearson {metrics['pearson']:.3f}"
    )


def _overrides(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, object]:
    overrides: dict[str, object] = {
        key: value for flag, key in FLAG_TO_KEY.items() if (value := getattr(args, flag)) is not None and value is not False
    }
    if args.data is not None:
        overrides |= _data_overrides(args, parser)
    if args.images is not None:
        if not args.images.exists():
            parser.error(f"--images {args.images}: no such folder or file")
        overrides.setdefault("kind", ModelKind.VISION)  # image pairs only make sense for the vision model
        overrides["data.source"] = ImageSource.FOLDER if args.images.is_dir() else ImageSource.CSV
        overrides["data.path"] = str(args.images.resolve())
    for assignment in args.set:
        key, separator, value = assignment.partition("=")
        if not separator:
            parser.error(f"--set expects SECTION.FIELD=VALUE, got {assignment!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def _data_overrides(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, object]:
    """`--data paraphrase|random` picks generated sequences; any other value is a text pair file."""
    path = Path(args.data)
    if args.data in {mode.value for mode in DataMode} and not path.exists():
        return {"data.mode": args.data}
    if args.model == ModelKind.VISION:
        parser.error("--data is for text pairs; give image pairs with --images")
    if args.model == ModelKind.SEQUENCES:
        parser.error(f"--data {args.data}: a file of text pairs trains --model text, not sequences")
    if not path.is_file():
        parser.error(f"--data {args.data}: no such file (a CSV, TSV or Parquet file of text pairs, or paraphrase/random)")
    return {"kind": ModelKind.TEXT, "data.path": str(path.resolve())}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siamese",
        description="Train and ship Siamese (shared-weight) Keras models. Exit codes: 0 done, 1 the flow failed, "
        "2 invalid configuration or input (nothing logged or written), 3 retrain --fail-on-regression found a regression, "
        "130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train, verify, evaluate and register a model",
        description=(
            "Run the training flow: pairs -> shared model (an LSTM for text, a CNN backbone for "
            "vision) -> training -> weight-sharing verification -> evaluation, recorded in MLflow; the new "
            "version is registered as challenger, and becomes champion only if there is none yet and it "
            "reaches gate.min_quality. Uses the Prefect API at PREFECT_API_URL, or a temporary one. The original script's "
            "run: " + ORIGINAL_RUN
        ),
    )
    _add_training_arguments(train)
    retrain = commands.add_parser(
        "retrain",
        help="train, then promote the new version to champion only if it beats the current one",
        description=(
            "Run the retraining flow (for CI and schedules): the training flow, then the registry gate "
            "compares the new version (alias challenger) with the champion on the same held-out pairs "
            "(paired bootstrap) and moves the champion alias only when it is better with confidence. "
            "Exit codes: 0 promoted or rightly kept, 1 the pipeline failed, 2 invalid configuration or "
            "input, 3 a regression with --fail-on-regression."
        ),
    )
    _add_training_arguments(retrain)
    retrain.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 3 when the new version is worse than the champion with confidence (or a first model misses the bar)",
    )
    _add_tune_command(commands)
    _add_score_command(commands)
    serve = commands.add_parser(
        "serve",
        help="serve the nightly training and weekly retraining deployments on their schedules, and the sweep's",
        description=(
            "Serve the deployments 'train-siamese/nightly-train' (02:00 daily), "
            "'retrain-siamese/weekly-retrain' (03:00 Mondays) and 'tune-siamese/sweep' (no schedule) from this "
            "long-running process; runs can also be started from the Prefect UI or `prefect deployment run`. Needs a Prefect server "
            "(PREFECT_API_URL), e.g. `prefect server start`."
        ),
    )
    ui = commands.add_parser(
        "ui",
        help="open the MLflow UI on the project's store (127.0.0.1 only)",
        description="Start the MLflow UI on MLFLOW_TRACKING_URI, or sqlite:///mlruns/mlflow.db, bound to 127.0.0.1.",
    )
    ui.add_argument("--port", type=int, default=5000)
    serve.add_argument("--config", type=Path, help="TOML file of the runs (default: the defaults)")
    serve.add_argument("--timezone", default="UTC", help="time zone of the schedules (default UTC)")
    return parser


def _add_tune_command(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser(
        "tune",
        help="search hyperparameters on a Dask cluster, then train, test and gate the best config",
        description=(
            "Run the sweep flow: Optuna (TPE, median pruning) asks for --trials configs from the search space "
            "(the config file's [tune] table, else the model family's), each trained as a Prefect task on a Dask "
            "cluster and judged on the validation split, with one nested MLflow run per trial under the sweep's "
            "run. The best config is written to --best-config, trained once more, tested on the test split, "
            "registered as challenger and gated as `siamese retrain` is. Exit codes: 0 promoted or rightly kept, "
            "1 the sweep failed (every trial failed, for one), 2 invalid configuration, search space or input "
            "(nothing started), 3 a regression with --fail-on-regression."
        ),
    )
    _add_training_arguments(tune, resumable=False)
    tune.add_argument("--trials", type=int, default=DEFAULT_TRIALS, help=f"configs to try (default {DEFAULT_TRIALS})")
    tune.add_argument(
        "--parallel",
        type=int,
        help="trials at once; on the local cluster also its worker processes (default: the CPU cores, at most 4; "
        "with --dask-address: the cluster's worker threads)",
    )
    tune.add_argument(
        "--dask-address",
        metavar="tcp://HOST:8786",
        help="run the trials on this Dask scheduler's workers (default: a local cluster of --parallel worker processes)",
    )
    tune.add_argument(
        "--study-storage",
        metavar="URL",
        help="the Optuna study's storage every worker reaches: an RDB URL (postgresql://...); default: a journal "
        "file in the sweep's --work-dir (workers on other machines need it on a shared disk)",
    )
    tune.add_argument(
        "--best-config", type=Path, default=Path("tuned.toml"), help="where the best config is written (default tuned.toml)"
    )
    tune.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 3 when the best config's model is worse than the champion with confidence (or a first model misses the bar)",
    )


def _add_training_arguments(train: argparse.ArgumentParser, resumable: bool = True) -> None:
    train.add_argument("--config", type=Path, help="TOML file with kind, seed and [data], [model], [training], [gate] tables")
    train.add_argument(
        "--model",
        choices=[kind.value for kind in ModelKind],
        help="model family: sequences (generated, the default), text (pairs from --data FILE) or vision",
    )
    train.add_argument("--epochs", type=int, help="the most epochs to train; training stops sooner when validation stops improving")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument(
        "--patience", type=int, help="stop after this many epochs without a better validation metric (0: run every epoch)"
    )
    train.add_argument("--num-pairs", type=int)
    train.add_argument("--timesteps", type=int, help="text: longest sequence; shorter ones are padded")
    train.add_argument(
        "--data",
        metavar="PATH",
        help="text: a CSV, TSV or Parquet file of labelled text pairs, or generated sequences: paraphrase (default) or random",
    )
    train.add_argument("--left-column", help="text file: the left text column (default: detected, e.g. question1)")
    train.add_argument("--right-column", help="text file: the right text column (default: detected, e.g. question2)")
    train.add_argument("--label-column", help="text file: the 0/1 label or score column (default: detected, e.g. is_duplicate)")
    train.add_argument(
        "--threshold",
        type=float,
        help="text file: the label is a graded score; pairs scoring >= THRESHOLD are similar (not with --task regression)",
    )
    train.add_argument(
        "--drop-invalid-rows", action="store_true", help="text file: drop (and count) invalid rows instead of stopping"
    )
    train.add_argument(
        "--split-column", help="text file: a column naming each row's split (train, dev/validation/trial, test): use the file's split"
    )
    train.add_argument(
        "--format", choices=[table.value for table in TableFormat], help="text file: csv, tsv or parquet (default: from the suffix)"
    )
    train.add_argument(
        "--quoting",
        choices=[quoting.value for quoting in Quoting],
        help="text file: csv (standard quoting) or none (quotes are text); default: detected per file",
    )
    train.add_argument("--units", type=int, help="text: LSTM units of the shared encoder")
    train.add_argument(
        "--head",
        choices=sorted({head.value for head in (*Head, *VisionHead)}),
        help="text: symmetric (default), manhattan, cosine or concat; vision: fusion (stereo's default), "
        "symmetric (--images' default), l1 or concat",
    )
    train.add_argument(
        "--images",
        type=Path,
        metavar="PATH",
        help="vision: a folder of class folders (root/[<group>/]<class>/<image>) or a CSV of left_path,right_path,label "
        "(default: generated stereo pairs)",
    )
    train.add_argument(
        "--task",
        choices=[task.value for task in Task],
        help="similarity (default) or regression: vision targets, or a text file's graded scores predicted on their scale",
    )
    train.add_argument("--backbone", choices=[backbone.value for backbone in Backbone], help="vision: compact (stereo's default), conv4 (--images' default) or xception")
    train.add_argument("--image-size", type=int, help="vision: images are resized to SIZE x SIZE (xception: >= 71)")
    train.add_argument("--devices", choices=[device.value for device in DevicePreference])
    train.add_argument("--precision", choices=[precision.value for precision in Precision])
    train.add_argument("--seed", type=int)
    train.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="any other config value, e.g. data.noise=0.3"
    )
    train.add_argument("--work-dir", type=Path, help="keep the run's data and model files here (default: a temporary directory)")
    if resumable:
        train.add_argument(
            "--fresh",
            action="store_true",
            help="prepare the data and train from the start instead of resuming what an interrupted run of the same config and data kept",
        )
    _add_verbose_argument(train)


def _add_verbose_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--verbose",
        action="store_true",
        help="print Prefect's reports of a failed step, tracebacks included (default: written to a debug log the message names)",
    )


def _add_score_command(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser(
        "score",
        help="score a file of raw text pairs with a registered model",
        description=(
            "Run the scoring flow: read a CSV, TSV or Parquet file of text pairs in chunks, score each "
            "row with a registered text pair model, and write the rows with a `similarity` column, an "
            "`is_similar` decision (similarity >= the threshold stored with the model: maximum F1 on its "
            "validation split) and an `error` column for rows that cannot be scored. The output appears "
            "only when complete."
        ),
    )
    score.add_argument("--model", required=True, metavar="URI", help="e.g. models:/siamese-text@champion or models:/siamese-text/3")
    score.add_argument("--input", required=True, type=Path, metavar="PATH", help="the pairs to score (.csv, .tsv, .parquet)")
    score.add_argument("--output", required=True, type=Path, metavar="PATH", help="where the scores go (.parquet, .csv, .tsv)")
    score.add_argument("--left-column", help="the left text column (default: detected, e.g. question1 or left)")
    score.add_argument("--right-column", help="the right text column (default: detected, e.g. question2 or right)")
    score.add_argument("--chunk-rows", type=int, default=50_000, help="rows scored at a time; bounds memory (default 50000)")
    score.add_argument(
        "--threshold",
        type=float,
        help="decide is_similar at similarity >= THRESHOLD instead of the model's stored threshold "
        "(default: stored; 0.5 for a model registered without one); for a graded model, on its scale (e.g. 0-5)",
    )
    _add_verbose_argument(score)

    dedupe = commands.add_parser(
        "dedupe",
        help="find the duplicate texts of a whole collection with a registered model",
        description=(
            "Run the dedupe flow: encode each text of a CSV, TSV or Parquet file once with the model's shared "
            "encoder, find each text's nearest texts with a FAISS index, score only those pairs with the model "
            "and group the duplicates (--grouping). Every row is written, in order, with `group` (its group's "
            "first row, counting data rows from 0), `is_representative`, `nearest` (the best-matching other row), "
            "`similarity` and `error`. The index is saved beside the output (OUTPUT.index) for --against. "
            "Recorded as an MLflow run in the siamese-dedupe experiment."
        ),
    )
    dedupe.add_argument("--model", required=True, metavar="URI", help="e.g. models:/siamese-text@champion")
    dedupe.add_argument("--input", required=True, type=Path, metavar="PATH", help="the texts, one per row (.csv, .tsv, .parquet)")
    dedupe.add_argument("--output", required=True, type=Path, metavar="PATH", help="where the groups go (.parquet, .csv, .tsv)")
    dedupe.add_argument("--text-column", help="the text column (default: detected: text, question, query, ... or the only column)")
    dedupe.add_argument(
        "--against", type=Path, metavar="PATH", help="also match each text against a collection an earlier dedupe saved (its output or .index folder)"
    )
    dedupe.add_argument("--neighbours", type=int, default=20, help="nearest texts the model scores per text at first (default 20)")
    dedupe.add_argument(
        "--max-neighbours",
        type=int,
        metavar="N",
        help="at most, for a text whose farthest candidates the model still accepts: they double until it rejects them (default 640, or "
        "--neighbours if more; set it to --neighbours for a fixed number)",
    )
    dedupe.add_argument("--threshold", type=float, help="duplicates at similarity >= THRESHOLD (default: the model's stored threshold)")
    dedupe.add_argument(
        "--grouping",
        choices=["centre", "connected"],  # siamese.dedupe.GROUPINGS, without importing it before the command runs
        default="centre",
        help="centre (default): a group is a text and the texts decided duplicates of it; connected: duplicates of "
        "duplicates join too (transitive: chains of borderline pairs can merge unrelated texts)",
    )
    dedupe.add_argument("--chunk-rows", type=int, default=50_000, help="rows written at a time (default 50000)")
    _add_verbose_argument(dedupe)

    embed = commands.add_parser(
        "embed",
        help="write each text's vector from a registered model's shared encoder",
        description=(
            "Run the embed flow: read a CSV, TSV or Parquet file of texts in chunks and write every row with an "
            "`embedding` column (a unit-length vector from the model's shared encoder: compare two by their inner product) "
            "and an `error` column, to Parquet. The output appears only when complete."
        ),
    )
    embed.add_argument("--model", required=True, metavar="URI", help="e.g. models:/siamese-text@champion")
    embed.add_argument("--input", required=True, type=Path, metavar="PATH", help="the texts, one per row (.csv, .tsv, .parquet)")
    embed.add_argument("--output", required=True, type=Path, metavar="PATH", help="where the vectors go (.parquet)")
    embed.add_argument("--text-column", help="the text column (default: detected)")
    embed.add_argument("--chunk-rows", type=int, default=50_000, help="rows embedded at a time; bounds memory (default 50000)")
    _add_verbose_argument(embed)


if __name__ == "__main__":
    run()
