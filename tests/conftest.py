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
