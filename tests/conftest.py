"""Test configuration: quiet TensorFlow, and two logical CPU devices so that
`tf.distribute.MirroredStrategy` tests have two replicas on a machine without accelerators.
The logical devices must be configured before TensorFlow initializes its runtime."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # runtime already initialized by another import; keep what exists
    pass


# The test files that take longest (about 45-105 s each under `-n 2`), started first: with
# `--dist loadfile` a worker takes the next file when it finishes one, so a long file
# collected last (alphabetically) would leave the other worker idle at the end.
LONGEST_FIRST = ("contextual_test.py", "notebooks_test.py", "cli_test.py", "evaluation_test.py",
                 "joining_test.py", "multiworker_test.py", "benchmarks_test.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order
