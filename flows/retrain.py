"""The retraining flow, for CI and schedules: train -> gate against the champion -> promote or keep.

The training flow runs as a subflow with `against_champion`: the new version is registered as
`challenger`, compared with the `champion` on the same held-out pairs, and promoted only when it
is better with confidence. The outcome tells CI whether to fail.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from prefect import flow

from flows.train import ConfigParameter, train_flow
from siamese.config import Config
from siamese.gate import Decision, GateResult
from tasks.reporting import publish_gate_decision


class Outcome(StrEnum):
    PROMOTED = "promoted"  # the new version is the champion
    KEPT = "kept"  # not better with confidence, or outpaced by a concurrent run's promotion: the champion rightly stays
    REGRESSION = "regression"  # worse with confidence (or below the bar): the champion stays, CI may fail


@flow(name="retrain-siamese")
def retrain_flow(config: ConfigParameter = Config(), work_dir: Path | None = None, fresh: bool = False) -> dict[str, object]:
    """Retrain on `config`, gate the new version against the champion, and report the outcome.

    Returns:
        The training flow's result plus `outcome` (promoted, kept or regression).

    Raises:
        Whatever the training flow raises (bad data, failed sharing verification, a version of
        other inputs than the champion): the champion is untouched, and a version registered
        before the failure is taken back (no alias, tagged `siamese.status = failed`).
    """
    result = train_flow(config=config, work_dir=work_dir, against_champion=True, fresh=fresh)
    outcome = outcome_of(result["gate"])
    publish_gate_decision(result["registered"], result["gate"], outcome)
    return result | {"outcome": outcome}


def outcome_of(gate: GateResult) -> Outcome:
    """Promoted; kept within noise (or outpaced); or a regression: confidently worse than the champion, or a first model below the bar."""
    if gate.decision is Decision.PROMOTE:
        return Outcome.PROMOTED
    if gate.outpaced_by is not None:
        return Outcome.KEPT
    if gate.champion is None or (gate.ci_high is not None and gate.ci_high < 0):
        return Outcome.REGRESSION
    return Outcome.KEPT
