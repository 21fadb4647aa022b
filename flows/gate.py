"""The registry gate: may the new version (alias `challenger`) become `champion`?

find the champion -> check inputs -> score the challenger -> score the champion -> judge -> record
-> move the alias (only if no concurrent run moved it since it was found).
A subflow of the training flow, so its steps show in the Prefect UI under their own flow run.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from siamese.config import Config
from siamese.gate import Decision, GateResult, outpaced
from tasks.gate import check_inputs, find_champion, judge, move_champion_alias, record_decision, score_version


@flow(name="registry-gate")
def gate_flow(
    run_id: str,
    registered: dict[str, object],
    test_path: Path,
    config: Config,
    against_champion: bool,
    work_dir: Path,
    baselines: dict[str, float] | None = None,
) -> GateResult | None:
    """Judge the new version on its run's held-out test pairs and record the decision on both versions.

    With no champion yet, the version must reach `gate.min_quality`, or without one beat the
    strongest of the run's `baselines` on the same test pairs. With one, `against_champion`
    compares both versions, loaded from the registry, on the same pairs (paired bootstrap);
    without it (plain training) the champion is left alone and None is returned. A version that
    fails to load fails the flow and is never promoted.

    Raises:
        IncompatibleVersionError: the version takes other inputs than the champion (plain
            training too: one registered model serves one kind of input); nothing is scored.
    """
    name, version = str(registered["name"]), str(registered["version"])
    champion = find_champion(name)
    if champion is not None:
        check_inputs(name, version, champion)
        if not against_champion:
            return None
    challenger_scores = score_version(f"models:/{name}/{version}", test_path, config, work_dir / "challenger-scores.npy")
    champion_scores = None
    if champion is not None:
        champion_scores = score_version(f"models:/{name}/{champion}", test_path, config, work_dir / "champion-scores.npy")
    result = judge(config, test_path, challenger_scores, champion_scores, baselines)
    record_decision(run_id, name, version, champion, result)
    if result.decision is Decision.PROMOTE:
        now = move_champion_alias(name, version, champion)
        if now != version:  # a concurrent run took the alias first: the record must say so
            result = outpaced(result, str(now))
            record_decision(run_id, name, version, champion, result)
    return result
