"""The Prefect artifact a reviewer reads in the flow run's page."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from siamese.evaluation import Calibration
from siamese.gate import GateResult
from siamese.sharing import SharingReport
from tasks.scoring import ScoringSummary


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(
    run_id: str,
    report: SharingReport,
    metrics: dict[str, float] | None,
    registered: dict[str, object] | None,
    baselines: dict[str, float] | None = None,
    gate: GateResult | None = None,
    calibration: Calibration | None = None,
) -> str:
    """Publish a markdown artifact: the sharing verdict, the decision threshold, test metrics beside any baselines, the gate's decision."""
    verdict = "passed" if report.passed else "**FAILED**: " + "; ".join(report.failures())
    lines = [
        "# Siamese training run",
        f"- MLflow run id: `{run_id}`",
        f"- Weight sharing: {verdict}",
        f"- Parameters: {report.total_params:,} (shared encoder {report.encoder_params:,} counted once; "
        f"an unshared twin would have {report.unshared_params:,})",
    ]
    if registered:
        aliases = ", ".join(f"`{alias}`" for alias in registered["aliases"])
        lines.append(
            f"- Registered: `{registered['name']}` version {registered['version']} ({aliases}; `{registered['model_uri']}`)"
        )
    if gate is not None:
        lines.append(f"- Gate: **{gate.decision}**: {gate.reason}")
    if calibration is not None:
        lines.append(
            f"- Decision threshold: similar when similarity >= {calibration.threshold:.4g} (maximum F1 {calibration.f1:.4f} "
            f"on the validation split; equal-error rate {calibration.equal_error_rate:.4f} at {calibration.equal_error_threshold:.4g}); "
            "the test metrics are at this threshold"
        )
    if metrics:
        lines += ["", "| test metric | value |", "| --- | --- |"]
        lines += [f"| {key} | {value:.4f} |" for key, value in metrics.items()]
        lines += [f"| baseline: {key} | {value:.4f} |" for key, value in (baselines or {}).items()]
    return str(create_markdown_artifact("\n".join(lines), key="training-summary", description="Siamese training run"))


@task(name="publish-scoring-summary", cache_policy=NO_CACHE)
def publish_scoring_summary(model_uri: str, summary: ScoringSummary) -> str:
    """Publish a markdown artifact: what was scored with which model, and the rows that could not be."""
    lines = [
        "# Batch scoring",
        f"- Model: `{model_uri}`",
        f"- Input: `{summary.input_path}` ({summary.rows:,} rows)",
        f"- Output: `{summary.output_path}` ({summary.scored:,} rows scored in {summary.seconds:.1f} s)",
        f"- Decision: `is_similar`: {summary.threshold.describe()}",
    ]
    if summary.unscorable_count:
        lines.append(f"- **{summary.unscorable_count:,} rows could not be scored** (first: {summary.unscorable_rows}):")
        lines += [f"  - {reason}: {count:,}" for reason, count in summary.unscorable.items()]
    return str(create_markdown_artifact("\n".join(lines), key="scoring-summary", description="Siamese batch scoring"))


@task(name="publish-gate-decision", cache_policy=NO_CACHE)
def publish_gate_decision(registered: dict[str, object], gate: GateResult, outcome: str) -> str:
    """Publish a markdown artifact: which version challenged which, the numbers, and the outcome."""
    fields = gate.to_dict()
    lines = [
        f"# Registry gate: {outcome}",
        f"- Challenger: `{registered['name']}` version {registered['version']}",
        f"- Decision: **{gate.decision}**: {gate.reason}",
        "",
        "| field | value |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in fields.items()),
    ]
    return str(create_markdown_artifact("\n".join(lines), key="gate-decision", description="Champion/challenger gate"))
