"""Every chapter's solution notebook, run in JupyterLab as a student would: Run All, then look.

One run per chapter (a module-scoped fixture keyed by the chapter's name), shared by the checks of
its outputs and of its explorers, so each notebook's <= 60 s of compute is paid once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from autograde import chapters as registry

from . import ui
from .explorers import CLIP, LAMBDA, ExplorerView, check_round_trip
from .lab import ARTIFACTS, VIEWPORT

pytestmark = pytest.mark.browser
# A chapter computes <= 60 s under nbclient on an idle machine; measured here in the browser with
# 6 other engineers' jobs running (load average 8-12 on 2 cores): 57-282 s.
RUN_TIMEOUT_S = 600


# What each solution must show once run (images, ipympl figures, explorer): autograde/chapters.py.
CHAPTERS = {chapter.id: chapter for chapter in registry.CHAPTERS}
EXPLORERS = {"clip": CLIP, "lambda": LAMBDA}


def notebook_path(name: str) -> str:
    return f"solutions/{name}/{name}.ipynb"


@dataclass
class Run:
    name: str
    page: object
    cells: list[dict]
    seconds: float


@pytest.fixture(scope="module")
def run(request, browser, lab_server):
    name = request.param
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    start = time.monotonic()
    ui.open_notebook(page, lab_server, notebook_path(name))
    ui.run_all(page)
    cells = ui.wait_run_finished(page, RUN_TIMEOUT_S)
    seconds = time.monotonic() - start
    with (ARTIFACTS / "chapter_run_seconds.txt").open("a") as log:  # the test-suite budget, per chapter
        log.write(f"{name} {seconds:.1f}\n")
    yield Run(name, page, cells, seconds)
    context.close()
    lab_server.delete_sessions()


def chapters(*names: str):
    """Parametrize a test over chapters, sharing one run per chapter across this module's tests."""
    return pytest.mark.parametrize("run", names, indirect=True, scope="module")


@chapters(*CHAPTERS)
def test_solution_runs_without_errors(run):
    assert ui.error_outputs(run.cells) == []
    assert ui.unexecuted_code_cells(run.cells) == [], "Run All did not reach these cells"


@chapters(*CHAPTERS)
def test_solution_shows_its_figures_and_widgets(run):
    expected, chapter, shown = ui.expected_outputs(run.cells), CHAPTERS[run.name], {}

    def all_shown():
        shown.update(ui.rendered_outputs(run.page))
        return (shown["images"] == expected["images"] and shown["widgets"] == expected["widgets"]
                and not shown["failed_widgets"]
                and shown["images"] >= chapter.images and shown["figures"] >= chapter.figures)

    try:  # widgets render, and ipympl figures paint, after the kernel is idle: give them time
        ui.wait_until(all_shown, 60, "every image and widget the kernel sent on the page")
    except TimeoutError:
        pytest.fail(f"the kernel sent {expected}, the chapter should show at least {chapter}, "
                    f"the page shows {shown}")


@chapters(*(c.id for c in registry.CHAPTERS if c.explorer))
def test_explorer_moves_and_comes_back(run, artifacts):
    spec = EXPLORERS[CHAPTERS[run.name].explorer]
    view = ExplorerView(run.page, spec)
    view.wait_shown()
    shots = artifacts / "lab"
    shots.mkdir(exist_ok=True)
    for label in spec.sliders:
        check_round_trip(view, label, shots)
