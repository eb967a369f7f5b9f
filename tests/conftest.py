import logging
import os
import sys

import pytest

# The suite trains, evaluates and compares with the portable CPU kernels (the same bits on every
# CPU kind), in this process and in every process it starts; tests of the default unset it.
os.environ["EPS_RESNET_CPU_KERNELS"] = "portable"

import eps_resnet  # noqa: E402,F401  (sets the TensorFlow switches before any test imports TF)


@pytest.fixture(scope="session")
def tf():
    from eps_resnet.compat import import_tf

    return import_tf()


class _CurrentStdout:
    """Whatever sys.stdout is at the time of writing."""

    def write(self, text):
        return sys.stdout.write(text)

    def flush(self):
        sys.stdout.flush()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """tensorpack's log handler keeps the stdout it found when tensorpack was imported; when
    that was a test's captured stream (capsys), pytest closes it after that test and every later
    log line fails ("--- Logging error ---"). Before any test's fixtures, let the handler write
    to the stdout of the moment instead."""
    if "tensorpack.utils.logger" in sys.modules:
        for handler in logging.getLogger("tensorpack").handlers:
            if type(handler) is logging.StreamHandler and not isinstance(handler.stream, _CurrentStdout):
                handler.stream = _CurrentStdout()
