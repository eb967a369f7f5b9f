"""ε-ResNet (Yu, Yu & Ramalingam, CVPR 2018) on tensorpack: training, data, results, compression."""
from . import compat  # noqa: F401  (must run before anything imports TensorFlow)

__version__ = "0.1.0"
