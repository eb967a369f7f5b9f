"""Network layouts (plain data, :mod:`.layouts`) and the tensorpack model (:mod:`.resnet`).

Importing this package does not import TensorFlow; import :mod:`eps_resnet.models.resnet` for the
model itself.
"""
from .layouts import FAMILIES, IMAGENET_DEPTHS, Block, Layout, check_depth, make_layout

#: How a block's branch and shortcut are joined (see :mod:`.resnet`): plain ResNet, plus the side
#: output, or every block gated with the side output (ε-ResNet).
VARIANTS = ("standard", "side", "epsilon")

__all__ = ["FAMILIES", "IMAGENET_DEPTHS", "VARIANTS", "Block", "Layout", "check_depth",
           "make_layout"]
