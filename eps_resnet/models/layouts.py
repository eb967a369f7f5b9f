"""Block layouts of the two network families, as plain data (no TensorFlow).

A layout says which residual blocks a network has, in which group, with how many channels and
which stride, and where the side output is attached. The TensorFlow model
(:mod:`eps_resnet.models.resnet`) builds whatever layout it is given, so argument checking, the
workflow and compression can reason about a network without building it.

Block names follow the original implementation's logs: ``res{group}.{index}`` with groups
counted from 1 (``res2.3`` is the fourth block of the second group).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

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
    preactivated: bool = False  # input already BN-ReLU'd by the stem: no pre-activation of its own
    shortcut_only: bool = False  # a discarded downsampling block: only its shortcut remains


@dataclass(frozen=True)
class Layout:
    family: str
    depth: int
    block_type: str  # "cifar_basic", "basic" or "bottleneck"
    blocks: tuple[Block, ...]
    side_after: str | None  # block after which the side output is attached (None: no side head)

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
            blocks.append(Block(f"res{g}.{i}", g, i, width * expansion, stride,
                                preactivated=not blocks))
    return tuple(blocks)


def needs_shortcut(layout: Layout, index: int) -> bool:
    """Whether block ``index`` changes the shape (its shortcut is not the identity)."""
    c_in = stem_channels(layout) if index == 0 else layout.blocks[index - 1].channels
    block = layout.blocks[index]
    return block.stride != 1 or c_in != block.channels


def compress_layout(layout: Layout, discarded) -> tuple[Layout, dict[str, str]]:
    """The layout without the ``discarded`` blocks, and {new block name: old name}.

    A discarded block whose shortcut changes the shape stays as a shortcut-only block; the other
    blocks of each group are renumbered in order. The side head (training only) is dropped.
    """
    gone = set(discarded)
    unknown = gone - {b.name for b in layout.blocks}
    if unknown:
        raise ValueError(f"no block named {', '.join(sorted(unknown))} in this layout")
    kept, mapping, next_index = [], {}, {}
    for i, b in enumerate(layout.blocks):
        if b.name in gone and not needs_shortcut(layout, i):
            continue
        index = next_index.get(b.group, 0)
        next_index[b.group] = index + 1
        new = replace(b, name=f"res{b.group}.{index}", index=index, shortcut_only=b.name in gone)
        kept.append(new)
        mapping[new.name] = b.name
    return replace(layout, blocks=tuple(kept), side_after=None), mapping


def structure_of(layout: Layout, mapping: dict[str, str]) -> list[list[dict]]:
    """A compressed layout as plain data (for compressed.yaml): per group, each block's fields
    and the full network's block it came from."""
    return [[dict(name=b.name, from_block=mapping[b.name], channels=b.channels, stride=b.stride,
                  preactivated=b.preactivated, shortcut_only=b.shortcut_only) for b in g]
            for g in layout.groups]


def layout_from_structure(family: str, depth: int, structure: list[list[dict]]) -> Layout:
    """The layout that :func:`structure_of` wrote (a compressed network has no side output)."""
    full = make_layout(family, depth)
    blocks = tuple(Block(name=b["name"], group=int(b["name"][3:].split(".")[0]),
                         index=int(b["name"].split(".")[1]), channels=b["channels"],
                         stride=b["stride"], preactivated=b["preactivated"],
                         shortcut_only=b["shortcut_only"])
                   for g in structure for b in g)
    return Layout(full.family, full.depth, full.block_type, blocks, None)


def original_ratio_denominator(layout: Layout) -> int:
    """What the original implementation divided the discarded blocks by, and so the paper's
    discarded ratios: all_cnt = 3n + 2 in the CIFAR family (n gated blocks per group, plus two),
    the gated blocks in the ImageNet family."""
    return len(layout.blocks) + 2 if layout.family == "cifar" else len(layout.blocks)


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
    preact = 0 if block.preactivated else _bn(c_in)
    if layout.block_type == "cifar_basic":
        return preact + _conv(3, c_in, c) + _bn(c) + _conv(3, c, c), 0
    projection = needs_shortcut(layout, index)
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
        total += kept + (0 if block.name in gone or block.shortcut_only else freed)
    total += _head(layout.blocks[-1].channels, num_classes)
    if side_output and layout.side_after:
        side = next(b.channels for b in layout.blocks if b.name == layout.side_after)
        total += _head(side, num_classes)
    return total


def _head(c: int, num_classes: int) -> int:
    """BN-ReLU, global average pooling, fully connected."""
    return _bn(c) + c * num_classes + num_classes


# -- compute ---------------------------------------------------------------------------------
def count_flops(layout: Layout, image_size: int, num_classes: int, discarded=()) -> int:
    """Floating-point operations of one forward pass of one image (a multiply-add counts 2),
    convolutions and fully-connected layers only (BN, ReLU and additions are a few percent)."""
    gone = set(discarded)
    size = image_size
    c_prev = stem_channels(layout)
    if layout.family == "cifar":
        macs = _conv(3, 3, c_prev) * size * size
    else:
        size = -(-size // 2)
        macs = _conv(7, 3, c_prev) * size * size
        size = -(-size // 2)  # max pooling
    for i, b in enumerate(layout.blocks):
        out = -(-size // b.stride)
        if needs_shortcut(layout, i) and layout.block_type != "cifar_basic":
            macs += _conv(1, c_prev, b.channels) * out * out
        if not (b.name in gone or b.shortcut_only):
            if layout.block_type == "bottleneck":
                inner = b.channels // 4
                macs += (_conv(1, c_prev, inner) * size * size + _conv(3, inner, inner) * out * out
                         + _conv(1, inner, b.channels) * out * out)
            else:
                macs += (_conv(3, c_prev, b.channels) + _conv(3, b.channels, b.channels)) * out * out
        size, c_prev = out, b.channels
    macs += c_prev * num_classes
    return 2 * macs
