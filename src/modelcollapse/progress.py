"""Progress bars that suit where they are drawn: a terminal, a file, or Jupyter.

rich, which draws the run's and the study's progress bars, detects Jupyter and
draws into an ``ipywidgets.Output`` widget; its plain-text copy of each frame keeps the terminal's ANSI
colour codes (``\\x1b[...m``), the widget does not show the final frame (rich leaves the last automatic
refresh, often ``0/N``), and without ipywidgets nothing is drawn but a warning. :func:`progress_bar`
gives the run loop and the study a ``rich.progress.Progress`` that in Jupyter is drawn as one HTML output
updated in place (IPython's ``display_id``, which every Jupyter front end and ``nbclient`` support; no
ipywidgets needed), with a plain-text copy free of escape codes, and always ends on the final state.
Outside Jupyter it is rich's own.
"""

from __future__ import annotations

import io
import threading
from typing import Any

from rich.progress import Progress

__all__ = ["NotebookProgress", "in_jupyter", "progress_bar"]


def in_jupyter() -> bool:
    """Whether output goes to a Jupyter front end (rich's own test: an IPython kernel, or Colab)."""
    from rich import get_console

    return get_console().is_jupyter


def progress_bar(*columns: Any, **kwargs: Any) -> Progress:
    """A ``rich.progress.Progress`` for this environment: rich's own in a terminal or a file, a
    :class:`NotebookProgress` in Jupyter."""
    if in_jupyter():
        return NotebookProgress(*columns, **kwargs)
    return Progress(*columns, **kwargs)


#: How a frame is wrapped as HTML (rich's own Jupyter format).
HTML_FRAME = ("<pre style=\"white-space:pre;overflow-x:auto;line-height:normal;"
              "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">{code}</pre>")


class NotebookProgress(Progress):
    """rich's Progress drawn in Jupyter as one HTML output (with a plain-text copy) that is updated in place.

    Frames are rendered on a console that writes nowhere and records what it is given, exported as HTML
    (colours as inline styles) and as plain text (no escape codes), and shown with IPython's
    ``display(..., display_id=True)``; a thread redraws the frame ``refresh_per_second`` times a second
    and :meth:`stop` draws the final one. ``transient=True`` empties the output at the end."""

    def __init__(self, *columns: Any, refresh_per_second: float = 2, transient: bool = False, **kwargs: Any) -> None:
        from rich import get_console
        from rich.console import Console

        for name in ("console", "auto_refresh", "redirect_stdout", "redirect_stderr"):
            kwargs.pop(name, None)
        self._paper = Console(file=io.StringIO(), record=True, width=get_console().width, force_jupyter=False,
                              force_terminal=False, force_interactive=False, color_system=None)
        super().__init__(*columns, console=self._paper, auto_refresh=False, redirect_stdout=False,
                         redirect_stderr=False, transient=transient, refresh_per_second=refresh_per_second,
                         **kwargs)
        self._every = 1.0 / refresh_per_second
        self._transient = transient
        self._handle: Any = None
        self._drawing = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def frame(self) -> dict[str, str]:
        """The current state as a MIME bundle: ``text/html`` and ``text/plain``."""
        with self._drawing:
            self._paper.print(self.get_renderable())
            html = self._paper.export_html(inline_styles=True, code_format=HTML_FRAME, clear=False)
            text = self._paper.export_text(clear=True, styles=False)
            self._paper.file = io.StringIO()  # what was printed is not kept
        return {"text/plain": text.rstrip("\n"), "text/html": html}

    def start(self) -> None:
        if self.disable or self._handle is not None:
            return
        try:
            from IPython.display import display
        except ImportError:  # rich was told it is in Jupyter without IPython: draw nothing
            return
        self._handle = display(self.frame(), raw=True, display_id=True)
        self._done.clear()
        self._thread = threading.Thread(target=self._tick, name="modelcollapse-progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._done.wait(self._every):
            self.refresh()

    def refresh(self) -> None:
        handle = self._handle
        if handle is not None:
            try:
                handle.update(self.frame(), raw=True)
            except Exception:  # noqa: BLE001 - a front end gone away never stops a run
                pass

    def stop(self) -> None:
        if self._handle is None:
            return
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        if self._transient:
            self._handle.update({"text/plain": ""}, raw=True)
        else:
            self.refresh()  # the final state, drawn from the thread that ran the work
        self._handle = None
