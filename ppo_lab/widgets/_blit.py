"""Redraw only what a slider moves: the rest of an explorer's figure is painted once and reused.

A full Agg draw of an explorer (layout, axes, ticks, legends, text) costs 3-6x more than drawing
its few moving artists onto the saved background (bench/slider_latency.py). An axis whose limits
follow the data (a histogram's count axis) is one of the moving artists: its ticks and labels are
left out of the background and drawn with the rest on every move, so rescaling it never needs a
full draw. Every data artist of that axis's Axes must then be moving too, or it would stay where
the old limits put it.
"""
from __future__ import annotations

from ipympl.backend_nbagg import Canvas, FigureManager
from matplotlib.figure import Figure


def explorer_figure(figsize: tuple[float, float]) -> Figure:
    """A figure on its own ipympl canvas (a widget), with no toolbar, header or resize handle.

    Not made through pyplot: pyplot's interactive mode asks for a full draw whenever an artist of
    its figures changes, and drawing the moving artists changes ticks (a rescaling Axis), so each
    of those draws would ask for the next one, forever.
    """
    figure = Figure(figsize=figsize, layout="constrained")
    canvas = Canvas(figure)
    FigureManager(canvas, 0)  # gives the canvas the manager ipympl expects when it is shown
    canvas.header_visible = False
    canvas.toolbar_visible = False
    canvas.resizable = False
    return figure


class BlitDrawer:
    """Draws ``moving`` artists (lines, patches, a rescaling ``Axis``) over a saved background."""

    def __init__(self, figure, moving):
        self.figure, self.canvas, self.moving = figure, figure.canvas, list(moving)
        for artist in self.moving:
            artist.set_animated(True)  # left out of full draws: _on_full_draw adds them on top
        self.background = None
        self.canvas.mpl_connect("draw_event", self._on_full_draw)

    def _on_full_draw(self, event) -> None:
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._draw_moving()

    def _draw_moving(self) -> None:
        for artist in self.moving:
            self.figure.draw_artist(artist)

    def redraw(self) -> None:
        """Show the moving artists as they are now."""
        if self.background is None:
            # Not shown yet: ipympl draws when the browser is ready (an earlier draw() would send
            # an image before its handshake, which the browser cannot decode).
            self.canvas.draw_idle()
        else:
            self.canvas.restore_region(self.background)
            self._draw_moving()
            self.canvas.blit(self.figure.bbox)
