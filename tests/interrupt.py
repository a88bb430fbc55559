"""Test helpers for interrupted training runs: a callback that stops `fit` at an epoch.

Used by tests/checkpoints_test.py, tests/runs_test.py and tests/model_test.py:
`from interrupt import Stop, StopAt`.
"""

import keras


class Stop(Exception):
    """Raised by `StopAt`: a run interrupted (as by a kill, without its own clean-up)."""


class StopAt(keras.callbacks.Callback):
    """Stops training at the start of epoch `epoch` (a run interrupted there)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Stop()
