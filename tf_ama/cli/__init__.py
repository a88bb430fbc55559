"""Layer 8, the `tf-ama` command line (`app`): parses arguments and calls the layers below."""

from tf_ama.cli.app import main  # noqa: F401  (the console script's entry point)
