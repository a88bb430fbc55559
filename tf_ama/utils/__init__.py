"""Layer 0, helpers every other layer may use: argument checks (`checks`), seeds (`seeds`),
file reading and atomic writing (`files`), memory bounds (`footprint`), progress bars
(`progress`) and `tf.distribute` arithmetic (`distributed`). Imports nothing else of tf_ama."""
