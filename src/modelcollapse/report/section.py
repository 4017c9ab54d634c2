"""A report section: a named function that adds HTML and figures to the page, in a set order.

Sections come from three places: the report core (header, metrics, provenance, ...), the
run's data kind (``DataSpec.report_sections``: sample grids, densities, generated text) and
its model family (``BaseModel.report_sections``). They are sorted by ``order``; data kinds use
``LEAD`` for what a reader should see first (samples) and ``DETAIL`` for what follows the
metric curves. This module imports nothing heavy: data kinds declare their sections with it.

A section that opens a ``page.add`` block with an ``<h2>`` heading gets a ``<section>`` of the page with an
anchor, the slug of the heading (``<h2>Class mix</h2>``: ``#class-mix``), and a line in the table of
contents; a heading that sets its own ``id`` keeps it. Write headings as plain ``<h2>TEXT</h2>`` at the
start of a block (see :func:`.page.outline`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HEADER, LEAD, METRICS, THEORY, DETAIL, VECTORS, PROVENANCE, STOPPED, FILES = 0, 10, 20, 25, 30, 40, 50, 60, 70


@dataclass(frozen=True)
class Section:
    name: str
    order: int
    draw: Callable[[Any, Any], None]  # (run: report.Run, page: report.Page) -> None
