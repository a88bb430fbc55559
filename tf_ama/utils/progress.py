"""A progress bar on standard error, for the long passes of `evaluate` and the baselines.

`keras.utils.Progbar` writes to standard output; this one writes the same bar to standard
error, so that what a command prints on standard output (`tf-ama evaluate --json`) stays
exactly its report.
"""

from __future__ import annotations

import contextlib
import sys


class Progress:
    """A `keras.utils.Progbar` of `target` units named `unit`, drawn on standard error
    under the line `title`.

    With `enabled=False` it draws nothing, so that callers need no branch.
    """

    def __init__(self, target, unit, enabled=True, title=None):
        self._bar = None
        self._done = 0
        if enabled:
            import keras

            if title:
                print(title, file=sys.stderr, flush=True)
            with contextlib.redirect_stdout(sys.stderr):  # it reads sys.stdout when made
                self._bar = keras.utils.Progbar(target, unit_name=unit, interval=0.5)

    def add(self, count):
        """Advances the bar by `count` units."""
        self._done += count
        if self._bar is not None:
            with contextlib.redirect_stdout(sys.stderr):
                self._bar.update(self._done)
