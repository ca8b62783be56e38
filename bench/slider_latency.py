"""Slider-to-paint latency of the course's explorers, in JupyterLab in headless Chromium.

    python -m bench.slider_latency [--moves 50] [--repeats 1] [--candidate DIR]

For each explorer (and each variant of it, below) a notebook that shows only that explorer is
run in JupyterLab; then every slider is moved `--moves` times with the keyboard (focused noUi
handle, one arrow press per move, bouncing 5 steps each way). Each move is timed in the page:

  start = the keydown event's timestamp (performance.now() time base);
  end   = the first drawImage onto the figure's canvas whose pixels differ from the picture shown
          before, plus one requestAnimationFrame and a macrotask: the frame with the new
          picture has then been composited.

The next move waits for that, plus SETTLE_S, so moves do not queue behind each other: this is a
person stepping a slider, not holding a key down. A move with no new picture within
MOVE_TIMEOUT_S counts as missed (and is printed). p50/p95 are over every move of an explorer.

Variants (the explorer modules are not edited; the notebook cell differs):
  shipped   the explorer as it is.
  candidate the explorer from DIR/ppo_lab (with --candidate DIR: a modified copy of the package),
            measured in the same run as the shipped one, so both meet the same machine load.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import nbformat
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from tests.browser import ui
from tests.browser.explorers import CLIP, EXPLORERS, LAMBDA, OPPOSITE, ExplorerView
from tests.browser.lab import CHROMIUM, VIEWPORT, launch_chromium, start_lab

MOVE_TIMEOUT_S = 5.0
SETTLE_S = 0.15
BOUNCE = 5  # presses one way before turning back: every slider here has more room than that
TARGET_P95_MS = 100
BUILD = {
    CLIP.name: "from ppo_lab.widgets import clip_explorer\n\nexplorer = clip_explorer()",
    LAMBDA.name: "from ppo_lab.widgets import LambdaExplorer\n\nexplorer = LambdaExplorer()",
}
# The cell that shows each variant of an explorer; BUILD[explorer] replaces {build}.
SHIPPED = "{build}\nexplorer"
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

# Installs window.latencyProbe on the explorer's canvas (see the module docstring).
PROBE_JS = """(canvas) => {
  const context = canvas.getContext('2d');
  const pixels = () => new Uint32Array(context.getImageData(0, 0, canvas.width, canvas.height).data.buffer);
  let shown = pixels();
  const probe = { pending: null, latencies: [] };
  document.addEventListener('keydown', (event) => {
    if (event.key.startsWith('Arrow')) probe.pending = { start: event.timeStamp };
  }, true);
  const drawImage = CanvasRenderingContext2D.prototype.drawImage;
  CanvasRenderingContext2D.prototype.drawImage = function (...args) {
    const result = drawImage.apply(this, args);
    const move = probe.pending;
    if (this.canvas === canvas && move && !move.drawn) {
      const now = pixels();
      if (now.some((value, i) => value !== shown[i])) {
        shown = now;
        move.drawn = true;
        requestAnimationFrame(() => setTimeout(() => {
          probe.latencies.push(performance.now() - move.start);
          probe.pending = null;
        }, 0));
      }
    }
    return result;
  };
  window.latencyProbe = probe;
}"""


def write_notebooks(folder: Path, variants: dict[str, str]) -> list[tuple[str, str, Path]]:
    """(explorer, variant, notebook) for every explorer and variant."""
    written = []
    for explorer, build in BUILD.items():
        for variant, cell in variants.items():
            notebook = nbformat.v4.new_notebook(metadata={"kernelspec": KERNEL})
            notebook.cells = [nbformat.v4.new_code_cell("%matplotlib widget"),
                              nbformat.v4.new_code_cell(cell.replace("{build}", build))]
            path = folder / f"{explorer}-{variant}.ipynb"
            nbformat.write(notebook, path)
            written.append((explorer, variant, path))
    return written


def time_moves(page, view: ExplorerView, label: str, moves: int) -> tuple[list[float], int]:
    """Latencies in ms of `moves` keyboard moves of one slider, and how many moves were missed."""
    page.evaluate("() => { window.latencyProbe.latencies = []; }")
    key, missed = view.roomier_key(label), 0
    view.handle(label).focus()
    for move in range(moves):
        if move and move % BOUNCE == 0:
            key = OPPOSITE[key]
        done = len(page.evaluate("() => window.latencyProbe.latencies")) + 1
        page.keyboard.press(key)
        try:
            page.wait_for_function(f"() => window.latencyProbe.latencies.length >= {done}",
                                   timeout=MOVE_TIMEOUT_S * 1000)
        except PlaywrightTimeout:
            missed += 1
            page.evaluate("() => { window.latencyProbe.pending = null; }")
        time.sleep(SETTLE_S)
    return page.evaluate("() => window.latencyProbe.latencies"), missed


def measure(page, server, explorer: str, notebook: Path, moves: int) -> dict[str, tuple[list[float], int]]:
    spec = next(s for s in EXPLORERS if s.name == explorer)
    ui.open_notebook(page, server, notebook.name)
    ui.run_all(page)
    cells = ui.wait_run_finished(page, timeout_s=120)
    if ui.error_outputs(cells):
        raise RuntimeError(f"{notebook.name}: {ui.error_outputs(cells)}")
    view = ExplorerView(page, spec)
    view.wait_shown()
    view.canvas.evaluate(PROBE_JS)
    results = {label: time_moves(page, view, label, moves) for label in spec.sliders}
    server.delete_sessions()
    return results


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def conditions() -> str:
    chromium = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True).stdout.strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} CPUs, load average {load}; {chromium}; Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=50, help="keyboard moves per slider")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over all explorers and variants")
    parser.add_argument("--candidate", type=Path, help="folder holding a modified ppo_lab package to compare")
    args = parser.parse_args()
    variants = {"shipped": SHIPPED}
    if args.candidate:
        # Before the explorer's import, so the kernel imports the candidate's ppo_lab.
        variants["candidate"] = f"import sys\n\nsys.path.insert(0, {str(args.candidate.resolve())!r})\n{SHIPPED}"
    print(f"before: {conditions()}")
    pooled: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="slider-latency-") as folder, sync_playwright() as playwright:
        notebooks = write_notebooks(Path(folder), variants)
        server = start_lab(root_dir=Path(folder), log_name="bench-jupyterlab.log")
        browser = launch_chromium(playwright)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            for repeat in range(args.repeats):
                # Variants of one explorer back to back, so they meet about the same machine load.
                for explorer, variant, notebook in notebooks:
                    for label, (latencies, missed) in measure(page, server, explorer, notebook, args.moves).items():
                        pooled.setdefault((explorer, variant), []).extend(latencies)
                        print(f"round {repeat + 1} {explorer:16s} {variant:9s} {label:26s} "
                              f"p50 {percentile(latencies, 50):6.1f} ms  p95 {percentile(latencies, 95):6.1f} ms  "
                              f"({len(latencies)} moves, {missed} missed)", flush=True)
        finally:
            browser.close()
            server.stop()
    print(f"after:  {conditions()}")
    print(f"\nslider input -> new picture painted, all sliders pooled (target p95 <= {TARGET_P95_MS} ms):")
    for (explorer, variant), latencies in pooled.items():
        print(f"  {explorer:16s} {variant:9s} p50 {percentile(latencies, 50):6.1f} ms  "
              f"p95 {percentile(latencies, 95):6.1f} ms  over {len(latencies)} moves")


if __name__ == "__main__":
    main()
