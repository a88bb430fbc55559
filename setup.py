"""tf_ama: strategyproof multi-bidder auctions learned as lottery affine maximizers."""

import re

from setuptools import find_packages, setup

# The one place the version is written: tf_ama/utils/version.py.
VERSION = re.search(r'VERSION = "([^"]+)"', open("tf_ama/utils/version.py", encoding="utf-8").read())[1]

# A set measured to work together (docs/design.md §6): TFP 0.25 needs tf_keras, which depends on
# `tensorflow`, so pin `tensorflow` (not `tensorflow-cpu`, which would add a second wheel).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tensorflow-probability==0.25.0",
    "tf-keras==2.21.0",
    "tensorboard==2.20.0",  # the TensorBoard callback of `tf-ama train`; not a TF 2.21 dependency
    "numpy==2.4.6",
    "matplotlib==3.11.2",
    "h5py==3.14.0",  # tf_ama.training.checkpoints writes weights with it (a keras dependency too)
    "scipy==1.17.1",  # tf_ama.evaluation.optimum: the optimal mechanism's linear program (HiGHS)
]

EXTRAS = {
    "serving": ["tensorflow-serving-api==2.21.0", "requests>=2.31,<3"],
    "notebooks": ["nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0"],
}
# pytest-xdist: the README's test command runs the suite in two worker processes (`-n 2`).
EXTRAS["test"] = ["pytest==9.2.0", "pytest-xdist==3.8.0", "hypothesis==6.155.2",
                  *EXTRAS["serving"], *EXTRAS["notebooks"]]

setup(
    name="tf_ama",
    version=VERSION,
    description="Differentiable economics for randomized affine maximizer auctions, in TensorFlow/Keras",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf_ama", "tf_ama.*"]),
    python_requires=">=3.10,<3.14",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tf-ama=tf_ama.cli.app:main"]},
)
