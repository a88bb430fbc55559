"""Export a trained run to a versioned SavedModel folder watched by TensorFlow Serving.

    python export/export_model.py runs/a22 --to models/additive_2x2_uniform [--version N]
        [--prune] [--prune-samples N] [--seed S]

Prints the new version folder (models/additive_2x2_uniform/1, then /2, ...). The same as
`tf-ama export`; both call tf_ama.export.run_export. Errors print without a traceback and exit
with status 2.
"""

import argparse
import sys

from tf_ama.export import add_export_arguments, run_export


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="export_model.py",
        description="Export a tf_ama run as a TF Serving SavedModel version folder.")
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    import tensorflow as tf

    try:
        run_export(args)
    except (ValueError, TypeError, OSError, tf.errors.InvalidArgumentError) as error:
        message = error.message if isinstance(error, tf.errors.OpError) else str(error)
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
