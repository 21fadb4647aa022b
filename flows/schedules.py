"""Scheduled flow runs: nightly training and weekly retraining of one configuration, and a sweep to start by hand.

`siamese serve` serves these deployments from one long-running process (no work pool needed);
`prefect.yaml` declares the same for a process work pool and `prefect worker start`.
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.retrain import retrain_flow
from flows.train import train_flow
from flows.tune import tune_flow
from siamese.config import Config

TRAIN_DEPLOYMENT, TRAIN_CRON = "nightly-train", "0 2 * * *"  # every day at 02:00
RETRAIN_DEPLOYMENT, RETRAIN_CRON = "weekly-retrain", "0 3 * * 1"  # Mondays at 03:00
SWEEP_DEPLOYMENT = "sweep"  # no schedule: started from the Prefect UI or `prefect deployment run tune-siamese/sweep`


def scheduled_deployments(config: Config, timezone: str = "UTC") -> list[RunnerDeployment]:
    """The training and retraining deployments of `config`, each on its cron schedule, and its sweep's (no schedule)."""
    parameters = {"config": config.to_dict()}
    return [
        train_flow.to_deployment(
            name=TRAIN_DEPLOYMENT,
            schedules=[Cron(TRAIN_CRON, timezone=timezone)],
            parameters=parameters,
            description="Train, verify, evaluate and register; the first model over the bar becomes champion.",
        ),
        retrain_flow.to_deployment(
            name=RETRAIN_DEPLOYMENT,
            schedules=[Cron(RETRAIN_CRON, timezone=timezone)],
            parameters=parameters,
            description="Retrain and promote the new version only if it beats the champion.",
        ),
        tune_flow.to_deployment(
            name=SWEEP_DEPLOYMENT,
            parameters=parameters,
            description="Search hyperparameters on a Dask cluster (`dask_address`, else a local one), then train, test and gate the best config.",
        ),
    ]
