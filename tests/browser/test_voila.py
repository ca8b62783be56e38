"""The standalone PPO explorer page, served by Voila as `make explore` serves it."""
import pytest

from .explorers import EXPLORERS, ExplorerView, check_round_trip
from .lab import REPO, VIEWPORT, start_voila

pytestmark = pytest.mark.browser
PAGE = REPO / "explorer" / "ppo_explorer.ipynb"


@pytest.fixture(scope="module")
def explorer_page(browser):
    server = start_voila(PAGE)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(server.url(""), timeout=120_000)
    yield page
    context.close()
    server.stop()


def test_page_shows_both_explorers_and_no_code(explorer_page):
    for spec in EXPLORERS:
        ExplorerView(explorer_page, spec).wait_shown(timeout_s=120)
    # Markdown cells keep an input area (their rendered text); code cells must show none.
    assert explorer_page.locator(".jp-CodeCell .jp-InputArea, .cm-editor").count() == 0
    page_text = explorer_page.locator("body").inner_text()
    assert not [code for code in ("%matplotlib", "import ", "clip_explorer()") if code in page_text]
    assert explorer_page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').count() == 0
    assert explorer_page.get_by_text("There was an error when executing cell").count() == 0


@pytest.mark.parametrize("spec", EXPLORERS, ids=lambda spec: spec.name)
def test_first_slider_moves_the_figure_and_back(explorer_page, spec, artifacts):
    view = ExplorerView(explorer_page, spec)
    view.wait_shown(timeout_s=120)
    shots = artifacts / "voila"
    shots.mkdir(exist_ok=True)
    check_round_trip(view, spec.sliders[0], shots)
