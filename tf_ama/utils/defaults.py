"""The defaults that several layers show, each written once: the menus and models take them
as their arguments' defaults, the recipes start from them, and `tf-ama train --help` prints
them (so this module imports nothing: the command line starts without TensorFlow).
`TrainingConfig`'s fields are the training defaults (`tf_ama.training.config`)."""

MENU_SIZE = 1024  # K, a lottery menu's entries (the empty one included)
TEMPERATURE = 100.0  # lambda, the softmax's inverse temperature in the relaxation (the paper's)
ACTIVE_REFRESH_STEPS = 10  # steps between choices of the active set
SELECTION_SAMPLES = 50_000  # auctions per size on which a contextual menu meets Myerson
BUNDLE_DISCOUNT = 0.3  # a contextual menu's grand bundles start this share below the family's
