"""Export a trained run to a versioned SavedModel folder watched by TensorFlow Serving.

    python export/export_model.py runs/a22 --to models/additive_2x2_uniform [--version N]
        [--prune] [--prune-samples N] [--seed S]

Prints the new version folder (models/additive_2x2_uniform/1, then /2, ...). The same as
`tf-ama export`; both call tf_ama.export.run_export. Errors (a bad argument, a damaged run, a
full disk) print as one line naming the file and the fix, without a traceback, and exit with
status 2.
"""

import argparse
import sys

from tf_ama.cli import run_command
from tf_ama.export import add_export_arguments, run_export


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="export_model.py",
        description="Export a tf_ama run as a TF Serving SavedModel version folder.")
    add_export_arguments(parser)
    return run_command(parser.prog, run_export, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
