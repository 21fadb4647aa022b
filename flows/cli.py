"""The `siamese` command line.

Only argparse and the config module load before a command runs, so `siamese --help` answers at
once; TensorFlow, Prefect and MLflow are imported when training starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from siamese.config import (
    Backbone,
    ConfigError,
    DataMode,
    DevicePreference,
    Head,
    ImageSource,
    ModelKind,
    Precision,
    Task,
    VisionHead,
    load_config,
)

# Command-line flag -> config key. Everything else is reachable with --set SECTION.FIELD=VALUE.
FLAG_TO_KEY = {
    "epochs": "training.epochs",
    "batch_size": "training.batch_size",
    "learning_rate": "training.learning_rate",
    "devices": "training.devices",
    "precision": "training.precision",
    "num_pairs": "data.num_pairs",
    "timesteps": "data.timesteps",
    "data": "data.mode",
    "units": "model.units",
    "head": "model.head",
    "seed": "seed",
    "model": "kind",
    "task": "data.task",
    "backbone": "model.backbone",
    "image_size": "data.image_size",
}

PREFECT_STARTUP_TIMEOUT_SECONDS = 120

ORIGINAL_RUN = "siamese train --data random --head concat --num-pairs 1000 --timesteps 10 --epochs 3 --batch-size 64"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        config = load_config(args.config, _overrides(args, parser))
    except ConfigError as error:
        print(f"siamese: invalid configuration: {error}", file=sys.stderr)
        return 2
    return _train(config, args.work_dir)


def _train(config, work_dir: Path | None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out
    # Prefect's temporary API server gives up after 20 s, which a first start (database
    # migrations) on a busy 2-core machine can exceed; a user's own setting still wins.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(PREFECT_STARTUP_TIMEOUT_SECONDS))
    from flows.train import train_flow
    from tasks.tracking import ui_command

    try:
        result = train_flow(config=config, work_dir=work_dir)
    except Exception as error:  # the flow run already recorded the failure; say what it was
        print(f"\nsiamese: training failed: {error}", file=sys.stderr)
        return 1
    registered = result["registered"]
    print(
        "\nTraining finished.\n"
        f"  {_headline(result['test_metrics'])}\n"
        f"  MLflow run id:     {result['run_id']}\n"
        f"  registered model:  {registered['name']} version {registered['version']}\n"
        f"  open the MLflow UI: {ui_command()}"
    )
    return 0


def _headline(metrics: dict[str, float]) -> str:
    """The test metrics a user looks at first: AUC for similarity, errors for regression."""
    if "roc_auc" in metrics:
        return f"test AUC {metrics['roc_auc']:.3f}, accuracy {metrics['accuracy']:.3f}"
    return f"test MAE {metrics['mae']:.3g} (predicting the mean: {metrics['baseline_mae']:.3g}), RMSE {metrics['rmse']:.3g}"


def _overrides(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, object]:
    overrides: dict[str, object] = {key: getattr(args, flag) for flag, key in FLAG_TO_KEY.items() if getattr(args, flag) is not None}
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siamese", description="Train and ship Siamese (shared-weight) Keras models.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train, verify, evaluate and register a model",
        description=(
            "Run the training flow: pairs -> shared model (an LSTM for text, a CNN backbone for "
            "vision) -> training -> weight-sharing verification -> evaluation, recorded in MLflow. "
            "Uses the Prefect API at PREFECT_API_URL, or a temporary one. The original script's "
            "run: " + ORIGINAL_RUN
        ),
    )
    train.add_argument("--config", type=Path, help="TOML file with kind, seed and [data], [model], [training] tables")
    train.add_argument("--model", choices=[kind.value for kind in ModelKind], help="model kind (default text)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--num-pairs", type=int)
    train.add_argument("--timesteps", type=int, help="text: longest sequence; shorter ones are padded")
    train.add_argument("--data", choices=[mode.value for mode in DataMode], help="text: generated data (default paraphrase)")
    train.add_argument("--units", type=int, help="text: LSTM units of the shared encoder")
    train.add_argument(
        "--head",
        choices=sorted({head.value for head in (*Head, *VisionHead)}),
        help="text: symmetric (default) or concat; vision: fusion (default), concat or symmetric",
    )
    train.add_argument(
        "--images",
        type=Path,
        metavar="PATH",
        help="vision: a folder of class folders (root/<class>/<image>) or a CSV of left_path,right_path,label "
        "(default: generated stereo pairs)",
    )
    train.add_argument("--task", choices=[task.value for task in Task], help="vision: similarity (default) or regression")
    train.add_argument("--backbone", choices=[backbone.value for backbone in Backbone], help="vision: compact (default) or xception")
    train.add_argument("--image-size", type=int, help="vision: images are resized to SIZE x SIZE (xception: >= 71)")
    train.add_argument("--devices", choices=[device.value for device in DevicePreference])
    train.add_argument("--precision", choices=[precision.value for precision in Precision])
    train.add_argument("--seed", type=int)
    train.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="any other config value, e.g. data.noise=0.3"
    )
    train.add_argument("--work-dir", type=Path, help="keep the run's data and model files here (default: a temporary directory)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
