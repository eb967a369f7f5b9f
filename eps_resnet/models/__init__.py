"""Network layouts (plain data, :mod:`.layouts`) and the tensorpack model (:mod:`.resnet`).

Importing this package does not import TensorFlow; import :mod:`eps_resnet.models.resnet` for the
model itself.
"""
from .layouts import FAMILIES, IMAGENET_DEPTHS, Block, Layout, check_depth, make_layout

__all__ = ["FAMILIES", "IMAGENET_DEPTHS", "Block", "Layout", "check_depth", "make_layout"]
