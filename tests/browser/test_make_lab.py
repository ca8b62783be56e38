"""`make lab` as a student runs it: the link it prints opens chapter 1 with a working kernel."""
import re

import pytest

from . import ui
from .lab import VIEWPORT, start_make_lab

pytestmark = pytest.mark.browser
FIRST_CHAPTER = "01_vanilla_pg.ipynb"


@pytest.fixture
def make_lab():
    server = start_make_lab()
    yield server
    server.stop()


def test_make_lab_opens_chapter_1(make_lab, browser, artifacts):
    printed = re.search(r"Open chapter 1: (http://\S+)", make_lab.log())
    assert printed, f"`make lab` printed no link to chapter 1:\n{make_lab.log()}"
    assert printed.group(1).startswith(f"{make_lab.base_url}/") and f"token={make_lab.token}" in printed.group(1)
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(printed.group(1))
        ui.wait_until(lambda: ui.kernel_status(page) == "Idle", 120, "chapter 1's kernel idle")
        ui.fail_on_dialog(page)
        active_tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
        assert FIRST_CHAPTER in active_tab.all_inner_texts()
        assert page.locator(f"{ui.NOTEBOOK} .jp-Cell").count() > 0
        page.screenshot(path=artifacts / "make_lab_chapter_1.png")
    finally:
        context.close()
