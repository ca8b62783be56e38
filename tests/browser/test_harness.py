"""The browser harness on its own notebooks: can it see an error, and can it see a figure move?"""
import math

import pytest

from . import ui
from .explorers import ExplorerSpec, ExplorerView, check_round_trip

pytestmark = pytest.mark.browser
FIXTURES = "tests/browser/fixtures"


def period_readout_problem(values: dict[str, float], readout: str) -> str | None:
    want = f"period = {2 * math.pi / values['frequency']:.3f}"
    return None if readout == want else f"readout {readout!r}, expected {want!r}"


FREQUENCY = ExplorerSpec(name="fixture_slider", sliders=("frequency",), readout_problem=period_readout_problem)


def test_an_error_is_reported_and_a_warning_is_not(page, lab_server):
    ui.open_notebook(page, lab_server, f"{FIXTURES}/raises.ipynb")
    ui.run_all(page)
    cells = ui.wait_run_finished(page, timeout_s=60)
    assert ui.error_outputs(cells) == ["cell 1: ValueError: fixture error"]
    assert ui.unexecuted_code_cells(cells) == [2]


def test_a_slider_changes_the_figure_and_back(page, lab_server, artifacts):
    ui.open_notebook(page, lab_server, f"{FIXTURES}/slider_figure.ipynb")
    ui.run_all(page)
    cells = ui.wait_run_finished(page, timeout_s=60)
    assert ui.error_outputs(cells) == []
    view = ExplorerView(page, FREQUENCY)
    view.wait_shown()
    shots = artifacts / "harness"
    shots.mkdir(exist_ok=True)
    check_round_trip(view, "frequency", shots)
