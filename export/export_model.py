"""Export a trained run to a versioned SavedModel folder watched by TensorFlow Serving.

    python export/export_model.py runs/a22 --to models/additive_2x2_uniform [--version N]
        [--prune] [--prune-samples N] [--seed S]

Prints the new version folder (models/additive_2x2_uniform/1, then /2, ...). Exactly
`tf-ama export` (`tf_ama.cli.app`, the home of its flags and errors): errors (a bad argument, a
damaged run, a full disk) print as one line naming the file and the fix, without a
traceback, and exit with status 2.
"""

import sys

from tf_ama.cli.app import main as tf_ama_main


def main(argv=None) -> int:
    """`tf-ama export ARGV...` (default `sys.argv[1:]`); returns the exit status."""
    return tf_ama_main(["export", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
