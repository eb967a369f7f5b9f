"""Residual branches of the pre-activation ResNets (He et al. 2016, "Identity Mappings").

Every block function takes the block input and returns ``(branch, shortcut)``; the model joins
them (plain sum, or through the ε gate), so the gate and the variants are written once for all
block types. With ``with_branch=False`` (a discarded downsampling block of a compressed network)
only the shortcut is built and the branch is None. Layer settings (data format, initialiser, no
conv bias) come from the ``argscope`` of :mod:`eps_resnet.models.resnet`.
"""
from __future__ import annotations

from tensorpack.models import AvgPooling, BNReLU, Conv2D

from ..compat import import_tf

tf = import_tf()


def channels_of(x, data_format: str) -> int:
    return int(x.shape[1] if data_format == "NCHW" else x.shape[-1])


def cifar_basic(x, channels: int, stride: int, preactivated: bool, data_format: str,
                with_branch: bool = True):
    """Two 3x3 convolutions; a downsampling block's shortcut is 2x2 average pooling plus
    zero-padding of the new channels (no parameters)."""
    c_in = channels_of(x, data_format)
    branch = None
    if with_branch:
        act = x if preactivated else BNReLU("preact", x)
        branch = Conv2D("conv1", act, channels, 3, strides=stride, activation=BNReLU)
        branch = Conv2D("conv2", branch, channels, 3)
    shortcut = x
    if stride != 1 or c_in != channels:
        shortcut = AvgPooling("pool", x, stride, strides=stride, padding="SAME")
        pad = (channels - c_in) // 2
        pads = [[0, 0], [pad, channels - c_in - pad], [0, 0], [0, 0]]
        if data_format == "NHWC":
            pads = [pads[0], pads[2], pads[3], pads[1]]
        shortcut = tf.pad(shortcut, pads)
    return branch, shortcut


def _projected_shortcut(x, act, channels: int, stride: int, data_format: str):
    """Identity, or a 1x1 convolution of the pre-activated input where the shape changes."""
    if stride == 1 and channels_of(x, data_format) == channels:
        return x
    return Conv2D("convshortcut", act, channels, 1, strides=stride)


def imagenet_basic(x, channels: int, stride: int, preactivated: bool, data_format: str,
                   with_branch: bool = True):
    """Basic block of ResNet-18/34."""
    act = x if preactivated else BNReLU("preact", x)
    shortcut = _projected_shortcut(x, act, channels, stride, data_format)
    if not with_branch:
        return None, shortcut
    branch = Conv2D("conv1", act, channels, 3, strides=stride, activation=BNReLU)
    branch = Conv2D("conv2", branch, channels, 3)
    return branch, shortcut


def bottleneck(x, channels: int, stride: int, preactivated: bool, data_format: str,
               with_branch: bool = True):
    """Bottleneck block of ResNet-50/101/152; ``channels`` is the output width (4x the inner)."""
    act = x if preactivated else BNReLU("preact", x)
    shortcut = _projected_shortcut(x, act, channels, stride, data_format)
    if not with_branch:
        return None, shortcut
    inner = channels // 4
    branch = Conv2D("conv1", act, inner, 1, activation=BNReLU)
    branch = Conv2D("conv2", branch, inner, 3, strides=stride, activation=BNReLU)
    branch = Conv2D("conv3", branch, channels, 1)
    return branch, shortcut


BLOCK_FUNCTIONS = {"cifar_basic": cifar_basic, "basic": imagenet_basic, "bottleneck": bottleneck}
