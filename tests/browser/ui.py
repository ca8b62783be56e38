"""What a student does in JupyterLab, as playwright calls: open a notebook, run all, read outputs.

Selectors and pitfalls come from ../shared/STACK_NOTES.md (measured on this machine).
"""
from __future__ import annotations

import time

from playwright.sync_api import Locator, Page

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
STATUS_ITEMS = "#jp-main-statusbar .jp-StatusBar-Item"
DIALOG = ".jp-Dialog"
IPYMPL_CANVAS = ".jupyter-matplotlib-canvas-div canvas:first-child"  # the second one draws the zoom box
INLINE_IMAGE = ".jp-OutputArea-output img"
# A widget output is a panel holding the view (ipywidgets' `.jupyter-widgets`, ipympl's
# `.jupyter-matplotlib`); closed or failed widgets leave it without one.
WIDGET_VIEW = ".jp-OutputArea-output.lm-Panel > .lm-Widget"
POLL_S = 0.25
# True once something was drawn: a canvas never painted is one uniform colour (transparent).
CANVAS_PAINTED_JS = """(canvas) => {
  if (!canvas.width || !canvas.height) return false;
  const ctx = canvas.getContext('2d');
  const data = new Uint32Array(ctx.getImageData(0, 0, canvas.width, canvas.height).data.buffer);
  return data.some(value => value !== data[0]);
}"""


def wait_until(condition, timeout_s: float, what: str, stable_polls: int = 1):
    """Poll `condition()` until it returns a truthy value `stable_polls` times in a row."""
    deadline, in_a_row, value = time.monotonic() + timeout_s, 0, None
    while time.monotonic() < deadline:
        value = condition()
        in_a_row = in_a_row + 1 if value else 0
        if in_a_row >= stable_polls:
            return value
        time.sleep(POLL_S)
    raise TimeoutError(f"after {timeout_s:.0f} s still waiting for: {what} (last value {value!r})")


def kernel_status(page: Page) -> str:
    """The status bar's kernel item, e.g. 'Python 3 (ipykernel) | Idle' -> 'Idle'.

    The status bar, not the toolbar indicator: only the status bar says when the kernel is connected,
    and a "Run All" sent before that is silently lost.
    """
    item = page.locator(STATUS_ITEMS, has_text=" | ")
    texts = item.all_inner_texts()
    return texts[0].rsplit("|", 1)[1].strip() if texts else ""


def fail_on_dialog(page: Page) -> None:
    # A dialog (kernel choice, load error) stops a student as surely as it stops the test.
    if page.locator(DIALOG).count():
        raise AssertionError(f"JupyterLab shows a dialog: {page.locator(DIALOG).first.inner_text()!r}")


def open_notebook(page: Page, server, path: str, timeout_s: float = 120) -> Locator:
    """Open `path` (relative to the server root) in a fresh workspace; wait for an idle kernel."""
    page.goto(server.url(f"lab/tree/{path}", reset=""))

    def idle():
        fail_on_dialog(page)
        return kernel_status(page) == "Idle"

    wait_until(idle, timeout_s, f"kernel of {path} idle in the status bar")
    return page.locator(NOTEBOOK)


def run_all(page: Page) -> None:
    page.locator(".lm-MenuBar-itemLabel:text-is('Run')").click()
    page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()


# Cells of the notebook in the current tab, read from its model (needs expose_app_in_browser).
_CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  return Array.from(panel.content.model.cells).map((cell, index) => ({
    index,
    type: cell.type,
    source: cell.sharedModel.getSource(),
    execution_count: cell.type === 'code' ? cell.executionCount : null,
    running: cell.type === 'code' && cell.executionState === 'running',
    outputs: cell.type === 'code' ? cell.outputs.toJSON() : [],
  }));
}"""


def cells(page: Page) -> list[dict]:
    return page.evaluate(_CELLS_JS)


def wait_run_finished(page: Page, timeout_s: float) -> list[dict]:
    """Wait until no cell runs or waits to run and the kernel is idle; return the cells."""

    def finished():
        fail_on_dialog(page)
        queued = page.locator(f"{NOTEBOOK} .jp-InputPrompt", has_text="[*]").count()
        current = cells(page)
        return not queued and not any(c["running"] for c in current) and kernel_status(page) == "Idle"

    # Between two cells the kernel is briefly idle: ask for the quiet state twice in a row.
    wait_until(finished, timeout_s, "run-all to finish", stable_polls=3)
    return cells(page)


def error_outputs(notebook_cells: list[dict]) -> list[str]:
    """'cell N: Name: message' for every output of type error (warnings on stderr are fine)."""
    return [
        f"cell {c['index']}: {out['ename']}: {out['evalue']}"
        for c in notebook_cells
        for out in c["outputs"]
        if out["output_type"] == "error"
    ]


def unexecuted_code_cells(notebook_cells: list[dict]) -> list[int]:
    # An empty code cell is never sent to the kernel, so it keeps no execution count.
    return [
        c["index"] for c in notebook_cells
        if c["type"] == "code" and c["source"].strip() and c["execution_count"] is None
    ]


IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def expected_outputs(notebook_cells: list[dict]) -> dict[str, int]:
    """What the kernel sent: rich outputs that must show up on the page.

    An output carrying a widget view shows the widget (e.g. an ipympl figure, whose bundle also
    holds a PNG for other front ends); only the other outputs with an image show an image.
    """
    data = [out.get("data", {}) for c in notebook_cells for out in c["outputs"]]
    widgets = [bool(d.get(WIDGET_MIME, {}).get("model_id")) for d in data]
    return {
        "images": sum(not widget and any(m in d for m in IMAGE_MIMES) for d, widget in zip(data, widgets)),
        "widgets": sum(widgets),
    }


def rendered_outputs(page: Page) -> dict[str, int]:
    """What the page shows: loaded images, widget views, painted ipympl canvases, failed widgets."""
    return page.evaluate(
        """([imageSel, widgetSel, canvasSel]) => {
          const painted = """ + CANVAS_PAINTED_JS + """;
          const outputs = Array.from(document.querySelectorAll('.jp-OutputArea-output'));
          return {
            images: Array.from(document.querySelectorAll(imageSel)).filter(i => i.complete && i.naturalWidth > 0).length,
            widgets: document.querySelectorAll(widgetSel).length,
            figures: Array.from(document.querySelectorAll(canvasSel)).filter(painted).length,
            failed_widgets: document.querySelectorAll('.jupyter-widgets-error-widget').length
              + outputs.filter(o => /^(Loading widget\\.\\.\\.|Error displaying widget)/.test(o.textContent)).length,
          };
        }""",
        [INLINE_IMAGE, WIDGET_VIEW, IPYMPL_CANVAS],
    )
