"""Redraw only what a slider moves: the rest of an explorer's figure is painted once and reused.

A full Agg draw of an explorer (axes, ticks, legends, text) costs 5-7x more than drawing its few
moving artists onto the saved background (bench/slider_latency.py). A change of axis limits
changes the ticks, so it still needs a full draw.
"""
from __future__ import annotations


class BlitDrawer:
    """Draws ``moving`` artists over a background saved at each full draw of ``figure``."""

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

    def redraw(self, limits_changed: bool) -> None:
        if self.background is None:
            # Not shown yet: ipympl draws when the browser is ready (an earlier draw() would send
            # an image before its handshake, which the browser cannot decode).
            self.canvas.draw_idle()
        elif limits_changed:
            self.canvas.draw()  # at once, not draw_idle(): that adds a round trip through the browser
        else:
            self.canvas.restore_region(self.background)
            self._draw_moving()
            self.canvas.blit(self.figure.bbox)
