"""tf_ama's version: `tf_ama.__version__`, what exports record, and what setup.py installs."""

VERSION = "0.1.0"
