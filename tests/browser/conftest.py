"""One JupyterLab server and one Chromium for the whole session; a fresh page per test."""
from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from .lab import ARTIFACTS, VIEWPORT, launch_chromium, start_lab

@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS

@pytest.fixture(scope="session")
def lab_server(artifacts):
    server = start_lab()
    yield server
    server.stop()

@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()

@pytest.fixture
def page(browser, lab_server):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    yield page
    context.close()
    lab_server.delete_sessions()
