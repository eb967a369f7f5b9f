import os
import sys

import pytest

import eps_resnet  # noqa: F401  (sets the TensorFlow switches before any test imports TF)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def tf():
    from eps_resnet.compat import import_tf

    return import_tf()


def eps_resnet_cmd(*args):
    """The command line of the installed ``eps-resnet`` (the venv's, whatever PATH says)."""
    return [sys.executable, "-m", "eps_resnet.cli", *map(str, args)]
