"""The course's slider explorers as seen in a browser: where they are, how to move them, what they show.

Used by the chapter tests, the Voila test and bench/slider_latency.py, in JupyterLab and in Voila
(both render outputs as `.jp-OutputArea-output`).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from playwright.sync_api import Locator, Page

from .ui import CANVAS_PAINTED_JS, IPYMPL_CANVAS, wait_until


def _number_after(text: str, label: str) -> float:
    match = re.search(re.escape(label) + r"\s*([-+]?[0-9.]+|∞)", text)
    if not match:
        raise AssertionError(f"readout has no {label!r} followed by a number: {text!r}")
    return float("inf") if match.group(1) == "∞" else float(match.group(1))


def clip_readout_problem(values: dict[str, float], readout: str) -> str | None:
    """The clip-fraction readout names the epsilon it was computed with: it must be the slider's."""
    shown = _number_after(readout, "|r − 1| >")
    want = round(values["clip range ε"], 2)
    return None if shown == want else f"readout says epsilon {shown}, slider is at {want}: {readout!r}"


def lambda_readout_problem(values: dict[str, float], readout: str) -> str | None:
    """The effective horizon shown must be 1 / (1 - gamma * lambda) of the sliders' values."""
    gamma, gae_lambda = values["γ"], values["λ"]
    want = float("inf") if gamma * gae_lambda >= 1 else round(1 / (1 - gamma * gae_lambda), 1)
    shown = _number_after(readout, "1/(1 − γλ) =")
    return None if shown == want else f"horizon shown {shown}, 1/(1 - {gamma}*{gae_lambda}) = {want}: {readout!r}"


@dataclass(frozen=True)
class ExplorerSpec:
    name: str
    sliders: tuple[str, ...]  # the sliders' description labels
    readout_problem: Callable[[dict[str, float], str], str | None]


CLIP = ExplorerSpec(
    name="clip_explorer",
    sliders=("clip range ε", "advantage A", "batch spread (std log r)"),
    readout_problem=clip_readout_problem,
)
LAMBDA = ExplorerSpec(
    name="lambda_explorer",
    sliders=("λ", "γ"),
    readout_problem=lambda_readout_problem,
)


class ExplorerView:
    """One displayed explorer: the output holding the sliders, its readout and its ipympl canvas."""

    def __init__(self, page: Page, spec: ExplorerSpec):
        self.page, self.spec = page, spec
        first_label = page.locator(".widget-slider .widget-label",
                                   has_text=re.compile(f"^{re.escape(spec.sliders[0])}$"))
        self.output = page.locator(".jp-OutputArea-output", has=first_label)
        self.canvas = self.output.locator(IPYMPL_CANVAS)

    def slider(self, label: str) -> Locator:
        exact = self.page.locator(".widget-label", has_text=re.compile(f"^{re.escape(label)}$"))
        return self.output.locator(".widget-slider", has=exact)

    def handle(self, label: str) -> Locator:
        return self.slider(label).locator(".noUi-handle")

    def value(self, label: str) -> float:
        # The slider's own readout, as the student reads it: noUiSlider's aria-valuenow lags behind
        # keyboard moves in ipywidgets 8 (measured: still 0.2 after three steps to 0.23).
        return float(self.slider_readout(label))

    def values(self) -> dict[str, float]:
        return {label: self.value(label) for label in self.spec.sliders}

    def slider_readout(self, label: str) -> str:
        return self.slider(label).locator(".widget-readout").text_content()

    def readout(self) -> str:
        # textContent, not innerText: JupyterLab skips the layout of cells out of view
        # (content-visibility), and innerText of an element never laid out is empty.
        return self.output.locator(".widget-html").text_content()

    def readout_problem(self) -> str | None:
        return self.spec.readout_problem(self.values(), self.readout())

    def pixels(self) -> str:
        return self.canvas.evaluate("canvas => canvas.toDataURL()")

    def wait_shown(self, timeout_s: float = 30) -> None:
        """Wait until every slider and a painted (not blank) canvas are on the page."""
        self.canvas.wait_for(timeout=timeout_s * 1000)
        for label in self.spec.sliders:
            self.handle(label).wait_for(timeout=timeout_s * 1000)
        wait_until(self.painted, timeout_s, f"{self.spec.name} canvas painted")

    def painted(self) -> bool:
        return self.canvas.evaluate(CANVAS_PAINTED_JS)

    def roomier_key(self, label: str) -> str:
        """ArrowRight if the slider has more room above its value than below, else ArrowLeft."""
        handle = self.handle(label)
        low, high = (float(handle.get_attribute(a)) for a in ("aria-valuemin", "aria-valuemax"))
        return "ArrowRight" if high - self.value(label) >= self.value(label) - low else "ArrowLeft"

    def press(self, label: str, key: str, times: int = 1) -> None:
        """Keyboard moves, as a person does: focus the slider's handle, press an arrow key."""
        self.handle(label).focus()
        for _ in range(times):
            self.page.keyboard.press(key)

    def wait_settled(self, accept: Callable[[str], bool], what: str, timeout_s: float = 30) -> str:
        """Wait until the canvas stops changing at a picture `accept` takes and the readout agrees
        with the sliders; return the picture (a data URL)."""
        last = {"pixels": None}

        def settled():
            pixels = self.pixels()
            same, last["pixels"] = pixels == last["pixels"], pixels
            return same and accept(pixels) and self.readout_problem() is None

        wait_until(settled, timeout_s, f"{self.spec.name}: {what}", stable_polls=3)
        return last["pixels"]


OPPOSITE = {"ArrowRight": "ArrowLeft", "ArrowLeft": "ArrowRight"}


def check_round_trip(view: ExplorerView, label: str, shots: Path, presses: int = 3) -> None:
    """Move one slider `presses` keyboard steps and back, as a person would: the figure must change
    (with the explorer's readout agreeing with the sliders), then come back to the first picture."""
    name = f"{view.spec.name}_{_slug(label)}"
    start_value = view.value(label)
    start = view.wait_settled(lambda pixels: True, "first picture")
    view.output.screenshot(path=shots / f"{name}_0_start.png")
    key = view.roomier_key(label)
    try:
        view.press(label, key, presses)
        view.wait_settled(lambda pixels: pixels != start, f"new picture after {presses} x {key} on {label}")
        assert view.value(label) != start_value, f"{label} did not move from {start_value} with {key}"
        view.output.screenshot(path=shots / f"{name}_1_moved.png")
        view.press(label, OPPOSITE[key], presses)
        view.wait_settled(lambda pixels: pixels == start, f"first picture back after {presses} x {OPPOSITE[key]}")
        assert view.value(label) == start_value
        view.output.screenshot(path=shots / f"{name}_2_back.png")
    except (AssertionError, TimeoutError):
        view.output.screenshot(path=shots / f"{name}_failed.png")
        raise


def _slug(label: str) -> str:
    """A file-name-safe label: 'clip range ε' -> 'clip_range_epsilon'."""
    spelled = "".join(c if c.isascii() else f" {unicodedata.name(c).split()[-1]} " for c in label)
    return re.sub(r"[^0-9a-zA-Z]+", "_", spelled).strip("_").lower()


EXPLORERS = (CLIP, LAMBDA)
