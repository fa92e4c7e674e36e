"""The report from fixed results (tests/fixtures/report): contents, statistics, self-contained HTML, rendering."""

from __future__ import annotations

import base64
import json
import shutil
import statistics
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.stats import binomtest, chi2
from sklearn.metrics import f1_score

from genreflow.tasks.report import paper
from genreflow.tasks.report.build import build_report
from genreflow.tasks.report.render import markdown_without_figures
from genreflow.tasks.report.statistics import (
    CellResult,
    ReportInputError,
    accuracy_of_rows,
    bootstrap_interval,
    macro_f1_of_rows,
    mcnemar,
    paired_correctness,
    spread,
)
from genreflow.tasks.report.ui_table import results_table
from tests.support.paths import FIXTURES

FIXTURE = FIXTURES / "report"
RUN_FILES = ("results.json", "run.json", "summary.json")
PLOT_NAMES = ("accuracy_by_clip", "confusion", "training_curves", "costs")


def fixture_cells() -> list[dict[str, Any]]:
    return json.loads((FIXTURE / "results.json").read_text())["cells"]


def write_run(
    folder: Path, keep: Callable[[dict[str, Any]], bool] = lambda cell: True, files: tuple[str, ...] = RUN_FILES
) -> Path:
    """A run folder from the fixture, holding only the cells `keep` accepts and only `files`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copy(FIXTURE / name, folder / name)
    (folder / "results.json").write_text(json.dumps({"cells": [cell for cell in fixture_cells() if keep(cell)]}))
    return folder


def report_with_settings(run_dir: Path, settings_of: Callable[[dict[str, Any]], dict[str, Any]]) -> str:
    """The Markdown report of the fixture's cells in `run_dir`, each cell with the settings `settings_of` gives it."""
    cells = [{**cell, "settings": settings_of(cell)} for cell in fixture_cells()]
    (run_dir / "results.json").write_text(json.dumps({"cells": cells}))
    return build_report(run_dir)[0].read_text()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The full fixture's report, built once: (run folder, Markdown, HTML)."""
    run_dir = write_run(tmp_path_factory.mktemp("run"))
    markdown_path, html_path = build_report(run_dir)
    return run_dir, markdown_path.read_text(), html_path.read_text()


def test_report_holds_every_cell_beside_the_papers_numbers(built: tuple[Path, str, str]) -> None:
    _, markdown, html_text = built
    for model, clip in {(cell["model"], cell["clip_seconds"]) for cell in fixture_cells()}:
        assert f"| {model} | {clip:g} s |" in markdown
    for model, accuracy in paper.PAPER_ACCURACY.items():
        row = " | ".join(f"{100 * accuracy[clip]:.0f}" for clip in sorted(accuracy))
        assert f"| Paper {model.upper()} ({paper.PAPER_TABLES[model]}: {paper.PAPER_ROW_NOTE}) | {row} |" in markdown
    assert paper.PAPER_DATA in markdown and paper.PAPER_DATA in html_text


def test_headline_numbers_are_the_mean_and_spread_over_seeds(built: tuple[Path, str, str]) -> None:
    accuracies = [
        cell["metrics"]["track"]["accuracy"]
        for cell in fixture_cells()
        if (cell["model"], cell["clip_seconds"]) == ("cnn", 15.0)
    ]
    expected = f"{100 * statistics.fmean(accuracies):.1f} ± {100 * statistics.stdev(accuracies):.1f}"
    each = ", ".join(f"{100 * accuracy:.1f}" for accuracy in accuracies)  # the fixture lists seed 0 first
    assert f"| cnn | 15 s | 0, 1 | {expected} | {each} |" in built[1]


def test_each_seeds_value_is_listed_in_seed_order_whatever_the_results_order(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run")
    (run_dir / "results.json").write_text(json.dumps({"cells": fixture_cells()[::-1]}))
    cnn = {cell["seed"]: cell["metrics"]["track"]["accuracy"] for cell in fixture_cells()
           if (cell["model"], cell["clip_seconds"]) == ("cnn", 15.0)}  # fmt: skip
    markdown = build_report(run_dir)[0].read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| cnn | 15 s | 0, 1 |"))
    assert cnn[0] != cnn[1] and f" | {100 * cnn[0]:.1f}, {100 * cnn[1]:.1f} | " in row


def test_the_paired_test_runs_per_seed_and_across_seeds_and_tracks(built: tuple[Path, str, str]) -> None:
    block = built[1].split("Best CNN vs best RNN:")[1].split("Best CNN vs best")[0]
    rows = {cells[0]: cells[1:] for line in block.splitlines() if line.startswith("| ") and "---" not in line
            for cells in [[cell.strip() for cell in line.strip("|").split("|")]]}  # fmt: skip
    per_seed = [rows["0"], rows["1"]]
    pooled = rows["all seeds, pooled"]
    for column in range(3):  # shared tracks, only the first right, only the second right: summed over seeds
        assert int(pooled[column]) == sum(int(row[column]) for row in per_seed)


def test_report_names_the_failed_cell_quarantined_file_and_run(built: tuple[Path, str, str]) -> None:
    _, markdown, _ = built
    run = json.loads((FIXTURE / "run.json").read_text())
    assert "| crnn | 30 s | 1 | ValueError: loss became NaN in epoch 2 |" in markdown
    quarantined = run["data"]["quarantined"][0]
    assert f"| {quarantined['path']} | {quarantined['reason']} |" in markdown
    assert run["flow_run_id"] in markdown and run["environment"]["git_commit"] in markdown
    assert run["data"]["data_version"] in markdown and f"Collection {run['data']['collection']}" in markdown
    assert "different data versions" not in markdown and "left out of that cell" not in markdown
    assert f"| learning curves | genreflow cache tensorboard --cache {run['parameters']['cache']} |" in markdown


def test_report_warns_when_cells_learned_from_other_data_and_lists_tracks_left_out(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    results["cells"][0]["data_version"] = "another0version0"
    results["cells"][1]["excluded"] = {"blues/blues.00001.wav": "shorter than the clip (600 frames < 1292, 30.00 s)"}
    (run_dir / "results.json").write_text(json.dumps(results))

    markdown = build_report(run_dir)[0].read_text()

    assert "Warning: the results come from 2 different data versions" in markdown
    first = results["cells"][1]
    assert f"| {first['model']} | {first['clip_seconds']:g} s | 1 |" in markdown


def test_report_says_how_it_differs_from_the_paper(built: tuple[Path, str, str]) -> None:
    section = built[1].split("## What differs from the paper")[1]
    for difference in paper.DIFFERENCES:
        assert difference.paper in section and difference.this_run in section


def test_plots_are_written_and_linked(built: tuple[Path, str, str]) -> None:
    run_dir, markdown, _ = built
    for name in PLOT_NAMES:
        assert (run_dir / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert f"](plots/{name}.png)" in markdown


class _HtmlAudit(HTMLParser):
    """Collects every URL-bearing attribute and checks that non-void tags close in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.open_tags: list[str] = []
        self.urls: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self.mismatches: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [(tag, value or "") for name, value in attrs if name in {"src", "href", "srcset", "action"}]
        if tag not in self.VOID:
            self.open_tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open_tags or self.open_tags.pop() != tag:
            self.mismatches.append(tag)


def test_html_is_well_formed_and_self_contained(built: tuple[Path, str, str]) -> None:
    audit = _HtmlAudit()
    audit.feed(built[2])
    audit.close()
    assert audit.mismatches == [] and audit.open_tags == []
    assert "script" not in audit.tags and "link" not in audit.tags
    assert [tag for tag, _ in audit.urls] == ["img"] * len(PLOT_NAMES)
    for _, url in audit.urls:
        prefix = "data:image/png;base64,"
        assert url.startswith(prefix)
        assert base64.b64decode(url[len(prefix) :]).startswith(b"\x89PNG")
    assert "http://" not in built[2] and "https://" not in built[2] and "//cdn" not in built[2]


def test_missing_pieces_become_sentences(tmp_path: Path) -> None:
    """One seed, no RNN, no run.json or summary.json: the report still builds and says what is missing."""
    run_dir = write_run(
        tmp_path, keep=lambda cell: cell["seed"] == 0 and cell["model"] != "rnn", files=("results.json",)
    )
    markdown = build_report(run_dir)[0].read_text()
    assert "a single seed, 0, so no spread" in markdown
    assert "This run has no RNN results." in markdown
    assert "Best CNN vs best RNN: skipped, this run has no RNN results." in markdown
    assert "run.json not found" in markdown
    assert "No per-epoch history recorded for: baseline." in markdown


def test_cells_without_predictions_or_history_are_reported_not_fatal(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, keep=lambda cell: cell["model"] == "baseline")
    results = json.loads((run_dir / "results.json").read_text())
    for cell in results["cells"]:
        del cell["track_predictions"], cell["history"]
    (run_dir / "results.json").write_text(json.dumps(results))
    markdown = build_report(run_dir)[0].read_text()
    assert "no bootstrap interval" in markdown
    assert "no training curves" in markdown
    assert "| cnn | 1 s | 0 | no result in results.json |" in markdown


def test_a_run_where_nothing_trained_still_reports(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, keep=lambda cell: False)
    markdown = build_report(run_dir)[0].read_text()
    assert "No cell finished training" in markdown
    assert "| cnn | no result | no result | no result | no result |" in markdown
    assert "| crnn | no result | no result | no result | failed |" in markdown


def test_summary_of_another_flow_run_is_ignored(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["flow_run_id"] = "an-earlier-run"
    (run_dir / "summary.json").write_text(json.dumps(summary))
    markdown = build_report(run_dir)[0].read_text()
    assert "loss became NaN" not in markdown
    assert "| crnn | 30 s | 1 | no result in results.json |" in markdown


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not readable JSON"),
        (
            '{"cells": [{"model": "cnn", "clip_seconds": 5, "seed": 0, "genres": [], "metrics": {"track": {}}}]}',
            "cell 0: missing or non-numeric 'metrics.track.accuracy'",
        ),
        ('{"cells": [{"model": "cnn"}]}', "cell 0: missing 'clip_seconds'"),
        ('{"cells": ["cnn"]}', "cell 0: expected a JSON object"),
        (
            '{"cells": [{"model": "cnn", "clip_seconds": 5, "seed": 0, "genres": ["pop"], '
            '"metrics": {"track": {"accuracy": 1, "macro_f1": 1}}, '
            '"track_predictions": [{"track_id": "pop/a.wav", "true": "pop", "predicted": "jazz"}]}]}',
            "track pop/a.wav names genre 'jazz', which is not in 'genres'",
        ),
        ("[]", "expected a JSON object"),
    ],
)
def test_bad_results_name_the_file_and_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "results.json").write_text(content)
    with pytest.raises(ReportInputError, match=str(tmp_path / "results.json")) as error:
        build_report(tmp_path)
    assert problem in str(error.value)


def test_results_table_has_a_row_per_model_and_clip(tmp_path: Path) -> None:
    rows = results_table(write_run(tmp_path))
    assert len(rows) == len({(cell["model"], cell["clip_seconds"]) for cell in fixture_cells()})
    cnn_30 = next(row for row in rows if (row["model"], row["clip_seconds"]) == ("cnn", 30.0))
    assert cnn_30["paper_accuracy"] == paper.PAPER_ACCURACY["cnn"][30.0]
    assert cnn_30["track_accuracy_ci_low"] <= cnn_30["track_accuracy"] <= cnn_30["track_accuracy_ci_high"]


def test_markdown_without_figures_keeps_the_caption() -> None:
    text = markdown_without_figures("before\n![Accuracy per clip](plots/accuracy_by_clip.png)\nafter")
    assert text == "before\n*Figure (in report.html and plots/accuracy_by_clip.png): Accuracy per clip*\nafter"


# ---- statistics against independent implementations ---------------------------------------------


@pytest.mark.parametrize(
    ("only_first", "only_second", "both"), [(11, 4, 10), (0, 0, 5), (3, 9, 0), (30, 12, 40), (20, 20, 3)]
)
def test_mcnemar_agrees_with_scipy(only_first: int, only_second: int, both: int) -> None:
    first = np.array([True] * only_first + [False] * only_second + [True] * both + [False] * 7)
    second = np.array([False] * only_first + [True] * only_second + [True] * both + [False] * 7)
    result = mcnemar(first, second)
    discordant = only_first + only_second
    assert (result.only_first_right, result.only_second_right, result.tracks) == (only_first, only_second, len(first))
    if discordant == 0:
        assert result.p_value == 1.0
    elif result.method == "exact binomial":
        assert result.p_value == pytest.approx(binomtest(only_first, discordant, 0.5).pvalue, rel=1e-9)
    else:
        statistic = max(abs(only_first - only_second) - 1, 0) ** 2 / discordant
        assert result.p_value == pytest.approx(chi2.sf(statistic, df=1), rel=1e-9)


def test_paired_correctness_pairs_the_same_tracks() -> None:
    cells = {(c["model"], c["clip_seconds"], c["seed"]): c for c in fixture_cells()}
    first = CellResult.from_json(cells[("cnn", 30.0, 0)], "cnn")
    second = CellResult.from_json(cells[("rnn", 5.0, 0)], "rnn")
    second_right = {p["track_id"]: p["true"] == p["predicted"] for p in cells[("rnn", 5.0, 0)]["track_predictions"]}
    expected = [second_right[p["track_id"]] for p in cells[("cnn", 30.0, 0)]["track_predictions"]]
    assert paired_correctness(first, second)[1].tolist() == expected


def test_macro_f1_of_rows_agrees_with_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    n_classes = 5
    true, predicted = rng.integers(0, n_classes, size=(6, 40)), rng.integers(0, n_classes, size=(6, 40))
    true[0] = np.where(true[0] == 4, 0, true[0])  # a genre missing from one row's truth
    true[1], predicted[1] = true[1] % 3, predicted[1] % 3  # genres missing from a row altogether
    ours = macro_f1_of_rows(true * n_classes + predicted, n_classes)
    for row in range(6):
        assert ours[row] == pytest.approx(f1_score(true[row], predicted[row], average="macro", zero_division=0))


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    correct = np.array([True] * 120 + [False] * 80)
    low, high = bootstrap_interval([correct], accuracy_of_rows)
    half_width = 1.96 * np.sqrt(0.6 * 0.4 / len(correct))
    assert low == pytest.approx(0.6 - half_width, abs=0.015) and high == pytest.approx(0.6 + half_width, abs=0.015)
    assert bootstrap_interval([correct], accuracy_of_rows) == (low, high)


def test_spread_of_one_seed_has_no_deviation() -> None:
    assert spread([0.5]).sd is None and spread([None]) is None
    assert spread([0.4, 0.6, None]).sd == pytest.approx(statistics.stdev([0.4, 0.6]))


# ---- a real browser ------------------------------------------------------------------------------


def test_headless_chromium_renders_the_report(built: tuple[Path, str, str], tmp_path: Path) -> None:
    """Chromium opens the file offline (all hosts blocked) and draws a page that is not blank."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    screenshot = tmp_path / "report.png"
    command = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--run-all-compositor-stages-before-draw",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1400,1600",
        "--virtual-time-budget=5000",
        f"--screenshot={screenshot}",
        (built[0] / "report.html").as_uri(),
    ]
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    pixels = imread(screenshot)[..., :3]
    not_white = np.any(pixels < 0.9, axis=-1)
    assert not_white.mean() > 0.02, "the screenshot is (nearly) blank"
    assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 50, "the screenshot has too few colours to hold plots"


def test_the_title_is_the_runs_name_and_the_feature_table_lists_only_what_defines_the_log_mel(
    tmp_path: Path,
) -> None:
    from genreflow.core import FEATURE_SETS, LOG_MEL

    run_dir = write_run(tmp_path / "run")
    run = json.loads((run_dir / "run.json").read_text())
    run["flow_run_name"] = "gtzan-sample-20261207-101500-ab12cd"
    run["data"]["feature_config"] = FEATURE_SETS[LOG_MEL].to_dict()  # every setting, the embedding's too
    (run_dir / "run.json").write_text(json.dumps(run))
    markdown = build_report(run_dir)[0].read_text()
    assert markdown.startswith("# genreflow report: gtzan-sample-20261207-101500-ab12cd\n")
    assert "| n_mels | 128 |" in markdown
    assert not any(f"| {name} |" in markdown for name in ("embedding", "embedding_size", "patch_frames"))


def test_the_report_says_what_the_networks_training_budget_was(tmp_path: Path) -> None:
    from dataclasses import asdict

    from genreflow.core import TrainingSettings

    stopping = {"schedule": "constant", "early_stopping": True}  # as a cell records them, resolved
    settings = asdict(
        TrainingSettings(crops_per_track=6, augment="specaugment", precision="float32", batch_size=32, **stopping)
    )
    run_dir = write_run(tmp_path / "run")
    markdown = report_with_settings(run_dir, lambda cell: settings)
    assert markdown.count("The networks' training budget:") == 1
    assert "up to 30 epochs, each of 6 random crops of every training track (as many at every clip length" in markdown
    assert "in batches of 32, Adam at 0.001, constant; stopping after 10 epochs without a lower" in markdown
    assert "stopping after 10 epochs without a lower validation loss; augmentation: specaugment." in markdown
    full = asdict(TrainingSettings(schedule="cosine", early_stopping=False, batch_size=32))
    assert (
        "Adam at 0.001, on a cosine schedule after one epoch's warm-up; every epoch run, the last weights kept"
        in report_with_settings(run_dir, lambda cell: full)
    )
    regularised = asdict(TrainingSettings(augment="mixup", label_smoothing=0.1, weight_decay=0.01, **stopping))
    markdown = report_with_settings(run_dir, lambda cell: regularised)
    assert "AdamW (weight decay 0.01) at 0.001, constant; stopping" in markdown
    assert "augmentation: mixup, targets smoothed by 0.1." in markdown
    unvalidated = asdict(
        TrainingSettings(schedule="constant", early_stopping=False, hold_out_validation=False, average_weights=True)
    )
    cells = [
        {
            **cell,
            "settings": {**unvalidated, "batch_size": 16 if cell["model"] == "cnn" else 32},
            "history": {**cell["history"], "val_accuracy": [], "val_loss": []},
        }
        for cell in fixture_cells()
    ]
    (run_dir / "results.json").write_text(json.dumps({"cells": cells}))
    markdown = build_report(run_dir)[0].read_text()
    assert (
        "every epoch run, the moving average of the last steps' weights kept, the validation tracks trained on too; "
        "augmentation" in markdown
    )
    assert markdown.count("The networks' training budget:") == 1  # one budget, the batch size given per model
    assert "in batches of 16 (cnn) or 32 (" in markdown
    assert "(plots/training_curves.png)" in markdown  # the training curves, without validation ones


def test_the_budget_gives_each_networks_own_schedule_stopping_and_augmentation(tmp_path: Path) -> None:
    from dataclasses import asdict

    from genreflow.core import TrainingSettings

    run_dir = write_run(tmp_path / "run")
    shared = asdict(TrainingSettings(batch_size=32, schedule="constant", early_stopping=True, augment="none"))
    own = {"schedule": "cosine", "early_stopping": False, "augment": "mixup"}
    assert {cell["model"] for cell in fixture_cells()} > {"rnn"}, "the fixture needs the RNN and another network"
    markdown = report_with_settings(run_dir, lambda cell: {**shared, **(own if cell["model"] == "rnn" else {})})
    assert markdown.count("The networks' training budget:") == 1
    assert "in batches of 32, Adam at 0.001, constant (" in markdown
    assert "or on a cosine schedule after one epoch's warm-up (rnn); stopping after 10 epochs" in markdown
    assert "validation loss (" in markdown
    assert "or every epoch run, the last weights kept (rnn); augmentation: none (" in markdown
    assert "or mixup (rnn)." in markdown


def test_the_headline_says_when_differences_are_within_noise(built: tuple[Path, str, str], tmp_path: Path) -> None:
    _, markdown, _ = built
    assert "Each cell was tested on 30 tracks, so an accuracy here can be off by up to ±18 points" in markdown
    assert "One seed gives no spread" not in markdown  # the fixture has two seeds
    one_seed = build_report(write_run(tmp_path / "run", keep=lambda cell: cell["seed"] == 0))[0].read_text()
    assert "One seed gives no spread" in one_seed and "is not evidence" in one_seed
