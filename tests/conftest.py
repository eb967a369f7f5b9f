import pytest

import eps_resnet  # noqa: F401  (sets the TensorFlow switches before any test imports TF)


@pytest.fixture(scope="session")
def tf():
    from eps_resnet.compat import import_tf

    return import_tf()
