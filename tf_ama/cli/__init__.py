"""Layer 8, the `tf-ama` command line: `app` parses arguments (`app.main`, the console
script's entry point) and calls the layers below; `commands` holds what each command does,
`flags` the argparse types."""

from tf_ama.utils.lazy import submodules

__getattr__, __dir__ = submodules(__name__, __path__)
