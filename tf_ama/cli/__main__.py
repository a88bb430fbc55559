"""`python -m tf_ama.cli ARGS`: the `tf-ama` command."""

import sys

from tf_ama.cli.app import main

sys.exit(main())
