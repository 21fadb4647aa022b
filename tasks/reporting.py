"""The Prefect artifact a reviewer reads in the flow run's page."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from siamese.sharing import SharingReport


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(
    run_id: str, report: SharingReport, metrics: dict[str, float] | None, registered: dict[str, str] | None
) -> str:
    """Publish a markdown artifact: the sharing verdict, test metrics and the MLflow run id."""
    verdict = "passed" if report.passed else "**FAILED**: " + "; ".join(report.failures())
    lines = [
        "# Siamese training run",
        f"- MLflow run id: `{run_id}`",
        f"- Weight sharing: {verdict}",
        f"- Parameters: {report.total_params:,} (shared encoder {report.encoder_params:,} counted once; "
        f"an unshared twin would have {report.unshared_params:,})",
    ]
    if registered:
        lines.append(f"- Registered: `{registered['name']}` version {registered['version']} (`{registered['model_uri']}`)")
    if metrics:
        lines += ["", "| test metric | value |", "| --- | --- |"]
        lines += [f"| {key} | {value:.4f} |" for key, value in metrics.items()]
    return str(create_markdown_artifact("\n".join(lines), key="training-summary", description="Siamese training run"))
