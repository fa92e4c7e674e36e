"""Publishes a run's report to Prefect, so the flow run's page in the UI shows the comparison itself.

Three artifacts under stable keys (the UI's Artifacts page groups every run's versions by key): the report
as Markdown, the results as a table, and a link to the self-contained HTML report on disk.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from genreflow.tasks.report.render import markdown_without_figures
from genreflow.tasks.report.ui_table import results_table
from genreflow.tasks.run_folder import REPORT_HTML, REPORT_MD

REPORT_KEY = "genreflow-report"
RESULTS_KEY = "genreflow-results"
REPORT_LINK_KEY = "genreflow-report-html"


def publish_report_artifacts(run_dir: Path | str) -> dict[str, UUID]:
    """Publish the report built in `run_dir` (by `build_report`) to the current flow or task run.

    Call it inside a flow or task so the artifacts attach to that run. Everything is read before anything is
    published, so bad inputs publish nothing. Returns the artifact ids by key.
    """
    run_dir = Path(run_dir).resolve()
    markdown_path, html_path = run_dir / REPORT_MD, run_dir / REPORT_HTML
    for path in (markdown_path, html_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: not found; build the report first (genreflow.tasks.report.build.build_report)"
            )
    markdown, table = markdown_without_figures(markdown_path.read_text()), results_table(run_dir)
    return {
        REPORT_KEY: create_markdown_artifact(
            markdown=markdown, key=REPORT_KEY, description=f"The genreflow report of {run_dir} (plots in report.html)."
        ),
        RESULTS_KEY: create_table_artifact(
            table=table,
            key=RESULTS_KEY,
            description="Mean over seeds per model and clip length (fractions, 0-1), beside the paper's accuracy.",
        ),
        REPORT_LINK_KEY: create_link_artifact(
            link=html_path.as_uri(),
            link_text=str(html_path),
            key=REPORT_LINK_KEY,
            description="The self-contained HTML report with plots; opens offline.",
        ),
    }
