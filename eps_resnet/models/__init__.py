"""The networks: block layouts (plain data, :mod:`.layouts`), the ε gate (:mod:`.gate`), the blocks
(:mod:`.blocks`) and the tensorpack model (:mod:`.resnet`).

May import data/ and the base modules; the training recipe arrives as an argument. Importing this
package does not import TensorFlow; import :mod:`eps_resnet.models.resnet` for the model itself.
"""
from .layouts import FAMILIES, IMAGENET_DEPTHS, Block, Layout, check_depth, make_layout

#: How a block's branch and shortcut are joined (see :mod:`.resnet`): plain ResNet, plus the side
#: output, or every block gated with the side output (ε-ResNet).
VARIANTS = ("standard", "side", "epsilon")

#: The ε-ResNet's gate unless ``--gate`` names another of :data:`.gate.GATES` (the paper's).
DEFAULT_GATE = "strict_identity"

__all__ = ["DEFAULT_GATE", "FAMILIES", "IMAGENET_DEPTHS", "VARIANTS", "Block", "Layout", "check_depth",
           "make_layout"]
