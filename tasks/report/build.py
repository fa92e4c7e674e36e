"""The run report: every result beside the paper's, as report.md and one self-contained report.html.

Built from the run folder (results.json, run.json, summary.json; see docs/CONTRACTS.md) at the end of every flow
run, including the runs that went wrong, and again by `genreflow report` without retraining.
"""

from __future__ import annotations

from pathlib import Path

from genreflow.files import write_bytes
from genreflow.tasks.report.analysis import analyse
from genreflow.tasks.report.figures import draw_plots
from genreflow.tasks.report.render import render_html, render_markdown
from genreflow.tasks.report.sections import sections_of, title_of
from genreflow.tasks.run_folder import PLOTS_DIR, REPORT_HTML, REPORT_MD, load_run_folder


def build_report(run_dir: Path | str) -> tuple[Path, Path]:
    """Write report.md, report.html and plots/*.png into the run folder; return the two report paths."""
    run_dir = Path(run_dir)
    analysis = analyse(load_run_folder(run_dir))
    plots = draw_plots(analysis, run_dir / PLOTS_DIR)
    sections = sections_of(analysis, plots)
    title = title_of(analysis.folder)
    markdown_path, html_path = run_dir / REPORT_MD, run_dir / REPORT_HTML
    write_bytes(markdown_path, render_markdown(title, sections).encode())
    write_bytes(html_path, render_html(title, sections).encode())
    return markdown_path, html_path
