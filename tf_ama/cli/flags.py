"""The argparse types of `tf-ama`'s flags and the tables of flags several commands share.

Each type checks its value while parsing, with `tf_ama.utils.checks` (argparse's usage line
and message, status 2), and imports nothing heavier than NumPy, only once a value is given.
"""

from __future__ import annotations

import argparse


# ------------------------------------------------------------------------------ flags
def checked(check, parse, **bounds):
    """An argparse `type`: `parse(text)` checked by `tf_ama.utils.checks.<check>(..., **bounds)`.

    Text that does not parse is refused by the same check (e.g. "must be an int >= 1; got
    '1.5'"); argparse names the flag before the message.
    """

    def convert(text):
        from tf_ama.utils import checks  # NumPy only, and only once a value is given

        try:  # ASCII digits only: int() and float() also read 1_000 and other scripts' digits
            value = parse(text) if text.isascii() and "_" not in text else text
        except ValueError:
            value = text
        try:
            return getattr(checks, check)("value", value, **bounds)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).replace("`value` ", "", 1)) from None

    convert.__name__ = check
    return convert


# The menu kinds `tf-ama train` builds (tf_ama.MENU_KINDS without "fixed", which only a given
# menu makes); listed here so that the command line starts without TensorFlow.
TRAINABLE_MENU_KINDS = ("lottery", "deterministic", "separable", "lottery+separable",
                        "bundle-sizes", "lottery+bundle-sizes")


RECIPES = ("default", "paper")  # tf_ama.training.recipes.RECIPES (tests/cli_test.py checks)


COUNT = checked("integer", int, minimum=1)


# The flags of contextual settings only (tf_ama.ContextualAuction), with their destinations.
# The flags that make a setting's prior a data file (tf_ama.empirical_setting), but the file.
DATA_FLAGS = {"--validation-fraction": "validation_fraction", "--test-fraction": "test_fraction",
              "--split-seed": "split_seed"}


CONTEXTUAL_FLAGS = {"--sizes": "sizes", "--hidden": "hidden", "--heads": "heads",
                    "--blocks": "blocks", "--linear-family-boosts": "linear_family_boosts",
                    "--bundles": "bundles", "--bundle-discount": "bundle_discount",
                    "--relative-loss": "relative_loss", "--size-features": "size_features"}


def sizes(text):
    from tf_ama.data.contexts import parse_size  # no TensorFlow (imported when auctions are drawn)

    try:
        return [parse_size(part) for part in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def size_dimensions(text):
    """`--size-features`: "bidders,items", "bidders", "items" or "none"."""
    from tf_ama.data.contexts import size_dimensions as check  # no TensorFlow

    try:
        return list(check("size_features", [] if text == "none" else text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be bidders,items, bidders, items or none; got {text!r}") from None


SEED = checked("seed", int)


def VERSION(text):
    from tf_ama.utils.checks import MAX_MODEL_VERSION  # NumPy only

    return checked("integer", int, minimum=1, maximum=MAX_MODEL_VERSION)(text)


def timeout(text):
    from tf_ama.serving.client import MAX_TIMEOUT  # NumPy only

    return checked("number", float, above=0, maximum=MAX_TIMEOUT)(text)


POSITIVE = checked("number", float, above=0)


def micro_batch(text):
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        return COUNT(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be 'auto', 'none' or an int >= 1; got {text!r}.") from None


def outcomes_file(text):
    """An argparse `type`: a writable .npz or .csv path (tf_ama.evaluation.outcome_files.check_path)."""
    from tf_ama.evaluation.outcome_files import check_path  # NumPy only

    try:
        return check_path("value", text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).replace("`value` ", "", 1)) from None
