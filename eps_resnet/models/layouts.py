"""Block layouts of the two network families, as plain data (no TensorFlow).

A layout says which residual blocks a network has, in which group, with how many channels and
which stride, and where the side output is attached. The TensorFlow model
(:mod:`eps_resnet.models.resnet`) builds whatever layout it is given, so argument checking, the
workflow and compression can reason about a network without building it.

Block names follow the original implementation's logs: ``res{group}.{index}`` with groups
counted from 1 (``res2.3`` is the fourth block of the second group).
"""
from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("cifar", "imagenet")

#: ImageNet pre-activation ResNets: depth -> (block type, blocks per group).
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)


@dataclass(frozen=True)
class Block:
    name: str  # e.g. "res2.0"
    group: int  # 1-based
    index: int  # 0-based within the group
    channels: int  # the block's output channels
    stride: int  # 2 on the first block of a downsampling group


@dataclass(frozen=True)
class Layout:
    family: str
    depth: int
    block_type: str  # "cifar_basic", "basic" or "bottleneck"
    blocks: tuple[Block, ...]
    side_after: str  # name of the block after which the side output is attached

    @property
    def groups(self) -> list[list[Block]]:
        out: dict[int, list[Block]] = {}
        for b in self.blocks:
            out.setdefault(b.group, []).append(b)
        return [out[g] for g in sorted(out)]


def cifar_units(depth: int) -> int:
    """Blocks per group n of a CIFAR-family depth 6n+2, or a ValueError."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"--depth {depth} is not a CIFAR-family depth; expected 6n+2 with n >= 1 "
            "(8, 14, 20, 32, 56, 110, 200, ...)")
    return (depth - 2) // 6


def check_depth(family: str, depth: int) -> None:
    """Raise a ValueError naming the allowed depths when ``depth`` is not one of ``family``."""
    if family == "cifar":
        cifar_units(depth)
    elif family == "imagenet":
        if depth not in IMAGENET_DEPTHS:
            raise ValueError(
                f"--depth {depth} is not an ImageNet-family depth; expected one of "
                f"{', '.join(map(str, IMAGENET_DEPTHS))}")
    else:
        raise ValueError(f"unknown network family {family!r}; expected one of {', '.join(FAMILIES)}")


def _blocks(counts, widths, expansion: int) -> tuple[Block, ...]:
    blocks = []
    for g, (count, width) in enumerate(zip(counts, widths), start=1):
        for i in range(count):
            stride = 2 if (i == 0 and g > 1) else 1
            blocks.append(Block(f"res{g}.{i}", g, i, width * expansion, stride))
    return tuple(blocks)


def make_layout(family: str, depth: int) -> Layout:
    """The :class:`Layout` of a network of ``family`` and ``depth``."""
    check_depth(family, depth)
    if family == "cifar":
        n = cifar_units(depth)
        blocks = _blocks((n,) * 3, CIFAR_WIDTHS, 1)
        # Middle of the network: group 2, block n/2 (the original's placement).
        side = f"res2.{min(n // 2, n - 1)}"
        return Layout(family, depth, "cifar_basic", blocks, side)
    block_type, counts = IMAGENET_DEPTHS[depth]
    blocks = _blocks(counts, IMAGENET_WIDTHS, 4 if block_type == "bottleneck" else 1)
    # The block at half of all blocks, placed inside the third group as in the original
    # (clamped to its first block for ResNet-18, where half falls before that group).
    index = max(0, sum(counts) // 2 - sum(counts[:2]) - 1)
    return Layout(family, depth, block_type, blocks, f"res3.{index}")


# -- parameter counts (trainable: conv kernels, BN gamma/beta, FC weights and biases) -----------
def _conv(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out


def _bn(c: int) -> int:
    return 2 * c


def block_parameters(layout: Layout, index: int) -> tuple[int, int]:
    """(parameters a discarded block frees, parameters it keeps) for block ``index``.

    A discarded block keeps what its shortcut needs: the ImageNet family's 1x1 projection and
    the pre-activation BN that feeds it. The CIFAR shortcut (pool + zero-pad) has no parameters.
    """
    block = layout.blocks[index]
    c_in = stem_channels(layout) if index == 0 else layout.blocks[index - 1].channels
    c = block.channels
    preact = 0 if index == 0 else _bn(c_in)
    if layout.block_type == "cifar_basic":
        return preact + _conv(3, c_in, c) + _bn(c) + _conv(3, c, c), 0
    projection = c_in != c or block.stride != 1
    kept = _conv(1, c_in, c) + preact if projection else 0
    if layout.block_type == "basic":
        branch = _conv(3, c_in, c) + _bn(c) + _conv(3, c, c)
    else:
        inner = c // 4
        branch = _conv(1, c_in, inner) + _bn(inner) + _conv(3, inner, inner) + _bn(inner) + _conv(1, inner, c)
    return branch + (0 if projection else preact), kept


def stem_channels(layout: Layout) -> int:
    return 16 if layout.family == "cifar" else 64


def count_parameters(layout: Layout, num_classes: int, side_output: bool = False,
                     discarded: tuple[str, ...] | list[str] = ()) -> int:
    """Trainable parameters of the network, without the blocks named in ``discarded``."""
    stem = stem_channels(layout)
    total = _conv(3 if layout.family == "cifar" else 7, 3, stem) + _bn(stem)
    gone = set(discarded)
    unknown = gone - {b.name for b in layout.blocks}
    if unknown:
        raise ValueError(f"no block named {', '.join(sorted(unknown))} in this layout")
    for i, block in enumerate(layout.blocks):
        freed, kept = block_parameters(layout, i)
        total += kept + (0 if block.name in gone else freed)
    total += _head(layout.blocks[-1].channels, num_classes)
    if side_output:
        side = next(b.channels for b in layout.blocks if b.name == layout.side_after)
        total += _head(side, num_classes)
    return total


def _head(c: int, num_classes: int) -> int:
    """BN-ReLU, global average pooling, fully connected."""
    return _bn(c) + c * num_classes + num_classes
