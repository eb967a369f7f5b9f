"""The ResNet / ε-ResNet model (a tensorpack ModelDesc) for both network families.

One model builds any :class:`~eps_resnet.models.layouts.Layout`; only the stem, the block
function and the input normalisation differ between families. The variant decides how a block's
branch and shortcut are joined and whether the side output is attached:

* ``standard``: ``shortcut + branch``;
* ``side``: the same, plus the side-supervision head (loss weight 0.1);
* ``epsilon``: every block through the strict-identity gate, plus the side head.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tensorpack import ModelDesc
from tensorpack.models import (AvgPooling, BatchNorm, BNReLU, Conv2D, FullyConnected,
                               MaxPooling)
from tensorpack.tfutils import argscope
from tensorpack.tfutils.summary import add_moving_summary
from tensorpack.tfutils.tower import get_current_tower_context
from tensorpack.models.regularize import regularize_cost

from ..compat import import_tf
from . import DEFAULT_GATE, VARIANTS
from .blocks import BLOCK_FUNCTIONS
from .gate import DISCARDED_AT, GATES
from .layouts import Layout, make_layout

if TYPE_CHECKING:  # the recipe is training's: it arrives here as an argument
    import numpy as np

    from ..training.recipe import Recipe

tf = import_tf()

# ImageNet inputs arrive as RGB in [0, 255] and are scaled to [0, 1] and normalised per channel as
# the original did: it read images as BGR and applied the usual RGB statistics in that order (B
# with R's mean and std, R with B's). ε is an absolute threshold on responses, so the inputs'
# statistics are part of the recipe: these are the original's, in our RGB order.
IMAGENET_MEAN = (0.406, 0.456, 0.485)
IMAGENET_STD = (0.225, 0.224, 0.229)


def weight_decay(recipe: Recipe):
    """The recipe's weight-decay factor: a constant, or decayed in steps of the global step."""
    if recipe.weight_decay_decay is None:
        return recipe.weight_decay
    from tensorpack.tfutils.common import get_global_step_var

    every, factor = recipe.weight_decay_decay
    return tf.train.exponential_decay(recipe.weight_decay, get_global_step_var(), every, factor,
                                      staircase=True, name="weight_decay")


class OriginalVarianceScaling:
    """The original's weight initialiser, TensorFlow 1's ``variance_scaling_initializer`` with
    factor 2 as its scripts and tensorpack 0.2.0 used it: a normal truncated at two standard
    deviations, the deviation sqrt(1.3 * 2 / n) chosen so that the truncated draw has a variance
    of about 2 / n (2.012 / n exactly). ``n`` is the fan-out of a convolution (kernel height x
    width x output channels) and the fan-in of a fully connected layer (its inputs)."""

    def __init__(self, mode: str):
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"mode {mode!r}: expected fan_in or fan_out")
        self.mode = mode

    def __call__(self, shape, dtype=None, partition_info=None, **kwargs):
        shape = [int(d) for d in shape]
        receptive = 1
        for d in shape[:-2]:
            receptive *= d
        n = receptive * (shape[-1] if self.mode == "fan_out" else shape[-2])
        return tf.random.truncated_normal(shape, 0.0, (1.3 * 2.0 / max(1, n)) ** 0.5,
                                          dtype=dtype or tf.float32)


@dataclass(frozen=True)
class ModelSpec:
    layout: Layout
    variant: str
    num_classes: int
    image_size: int
    #: weight decay, momentum and Nesterov, the initial learning rate, the side loss weight and
    #: the input format (what the dataflow delivers) come from the run's recipe.
    recipe: Recipe
    epsilon: float = 0.0  # initial value of the ε variable (callbacks may change it)
    data_format: str = "NHWC"
    mixed_kind: str | None = None  # devices.MIXED_KINDS; the GPU's needs loss scaling here
    inference_gates: str = "batch"  # settings.INFERENCE_GATES
    closed_gates: str = "reopen"  # settings.CLOSED_GATES
    gate: str = DEFAULT_GATE  # gate.GATES
    #: per-pixel training mean (float32, H x W x 3) that the network subtracts from the uint8
    #: pixels the dataflow delivers (data.dataflows.in_graph_mean); None: the input arrives
    #: ready (centred float32) or is ImageNet's uint8 RGB
    pixel_mean: np.ndarray | None = field(default=None, compare=False, repr=False)


def build_model(settings, layout: Layout | None = None, data_format: str = "NHWC",
                mixed_kind: str | None = None) -> "ResNetModel":
    """The model of resolved :class:`~eps_resnet.training.settings.TrainSettings`: the one way training,
    compression, evaluation and export build it. ``layout``: another layout of the same run
    (a compressed one); default, the run's own."""
    from ..data.dataflows import in_graph_mean

    return ResNetModel(ModelSpec(
        layout=layout or make_layout(settings.family, settings.depth), variant=settings.variant,
        num_classes=settings.classes, image_size=settings.image_size, recipe=settings.recipe,
        # the final ε: training sets the scheduled value before its first step, and restoring a
        # checkpoint restores the value it was saved with
        epsilon=settings.epsilon or 0.0, data_format=data_format, mixed_kind=mixed_kind,
        inference_gates=getattr(settings, "inference_gates", "batch"),
        closed_gates=getattr(settings, "closed_gates", "reopen"),
        gate=getattr(settings, "gate", DEFAULT_GATE), pixel_mean=in_graph_mean(settings)))


def graph_scalar(name: str, value: float, summary: bool = True):
    """A non-trainable float32 scalar variable created once per graph, outside any tower (and,
    with ``summary``, logged every epoch).

    Multi-GPU replicated training builds one copy of the model per GPU; a variable created inside
    the towers would be copied per tower and a callback would change only the first copy.
    """
    graph = tf.get_default_graph()
    key = f"eps_resnet/{name}"
    existing = graph.get_collection(key)
    if existing:
        return existing[0]
    with tf.name_scope(None), tf.variable_scope(tf.VariableScope(reuse=tf.AUTO_REUSE, name="")):
        var = tf.get_variable(name, initializer=float(value), dtype=tf.float32, trainable=False)
        if summary:
            tf.summary.scalar(f"{name}-summary", var)
    graph.add_to_collection(key, var)
    return var


def global_average(x, data_format: str, name: str = "gap"):
    """The mean of each map (global average pooling) as ``tf.reduce_mean`` computes it, with a
    gradient that divides the N x C gradient by H x W before spreading it over the maps:
    TensorFlow's own divides after spreading, one more full-size pass (0.28 ms of the side
    output's backward at batch 128 on an AMX Xeon), to the same values."""
    axes = [1, 2] if data_format == "NHWC" else [2, 3]
    size = float(x.shape[axes[0]] * x.shape[axes[1]])

    @tf.custom_gradient
    def mean(x):
        def spread(dy):
            # a real division, as TensorFlow's gradient has it: Grappler makes the same
            # multiply by 1 / size of both
            per_map = tf.expand_dims(tf.expand_dims(dy / size, axes[0]), axes[1])
            return tf.broadcast_to(per_map, tf.shape(x))
        return tf.reduce_mean(x, axes), spread

    with tf.name_scope(name):
        return tf.identity(mean(x), name="output")


def _classifier(name_scope: str, features, label, num_classes: int, top5: bool, data_format,
                pooled: bool = False):
    """BN-ReLU, global average pooling, fully connected; returns (logits, mean xent).

    ``pooled`` (the oneDNN bfloat16 rewrite): the global average as one average pooling over
    the whole map, whose gradient is one pass of oneDNN's (a mean's is a tile and a multiply
    of the whole map, in bfloat16 too); the same mean, summed in another order."""
    with tf.variable_scope(name_scope) if name_scope else nullcontext():
        feats = BNReLU("bnlast", features)
        if pooled:
            side = feats.shape.as_list()[1:3]
            feats = tf.reshape(tf.nn.avg_pool2d(feats, side, side, "VALID"),
                               [-1, feats.shape[-1]], name="gap")
        else:
            feats = global_average(feats, data_format)
        logits = FullyConnected("linear", feats, num_classes)
    prefix = f"{name_scope}/" if name_scope else ""
    xent = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=label),
        name=f"{prefix}cross_entropy_loss")
    wrong = tf.cast(tf.logical_not(tf.nn.in_top_k(logits, label, 1)), tf.float32,
                    name=f"{prefix}incorrect_vector")
    summaries = [xent, tf.reduce_mean(wrong, name=f"{prefix}train_error")]
    if top5:
        wrong5 = tf.cast(tf.logical_not(tf.nn.in_top_k(logits, label, 5)), tf.float32,
                         name=f"{prefix}incorrect_vector_top5")
        summaries.append(tf.reduce_mean(wrong5, name=f"{prefix}train_error_top5"))
    add_moving_summary(*summaries)
    return logits, xent


def _checkpoint_moving_averages() -> None:
    """Make the moving averages of the monitored summaries part of the checkpoints.

    tensorpack creates them as local variables, which checkpoints leave out: a resumed run would
    restart them from zero, and the adaptive learning rate, which reads the average of
    discarded_cnt, would follow another history than the uninterrupted run. As global variables
    they are saved with every checkpoint and restored on resume."""
    graph = tf.get_default_graph()
    local = graph.get_collection_ref(tf.GraphKeys.LOCAL_VARIABLES)
    for var in [v for v in local if v.op.name.startswith("EMA/")]:
        local.remove(var)
        graph.add_to_collection(tf.GraphKeys.GLOBAL_VARIABLES, var)


def _closed_for_good(block: str):
    """``--closed-gates stay``: the block's latch, 1.0 once training's moving average of its
    is_discarded has said discarded (one variable for all towers, checkpointed)."""
    return graph_scalar(f"{block}/gate/closed_for_good", 0.0, summary=False)


def _close_for_good_when_discarded(block: str, average) -> None:
    """Sets the block's latch when ``average`` (this step's updated moving average of its
    is_discarded) reaches DISCARDED_AT; runs every step with the moving averages' updates."""
    from tensorpack.utils.naming import MOVING_SUMMARY_OPS_KEY

    latch = _closed_for_good(block)
    discarded = tf.cast(average >= DISCARDED_AT, tf.float32)
    tf.add_to_collection(MOVING_SUMMARY_OPS_KEY, tf.assign(latch, tf.maximum(latch, discarded)))


class ResNetModel(ModelDesc):
    """Pre-activation ResNet of any layout, in the ``standard``, ``side`` or ``epsilon`` variant."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if spec.variant not in VARIANTS:
            raise ValueError(f"unknown variant {spec.variant!r}; expected one of {', '.join(VARIANTS)}")
        if spec.gate not in GATES:
            raise ValueError(f"unknown gate {spec.gate!r}; expected one of {', '.join(GATES)}")
        self.spec = spec

    @property
    def gated(self) -> bool:
        return self.spec.variant == "epsilon"

    @property
    def has_side_output(self) -> bool:
        return self.spec.variant in ("side", "epsilon") and self.spec.layout.side_after is not None

    @property
    def top5(self) -> bool:
        return self.spec.num_classes > 10

    def inputs(self):
        s = self.spec.image_size
        # ImageNet's and most CIFAR-family batches travel as uint8 (4x less to copy between
        # processes and to the GPU)
        return [tf.TensorSpec([None, s, s, 3], tf.uint8 if self.takes_uint8 else tf.float32, "input"),
                tf.TensorSpec([None], tf.int32, "label")]

    @property
    def takes_uint8(self) -> bool:
        """Whether the network's input is raw uint8 pixels (else centred float32)."""
        return self.spec.recipe.input_format == "rgb8" or self.spec.pixel_mean is not None

    # -- graph -------------------------------------------------------------------------------
    def _normalise(self, image):
        image = tf.cast(image, tf.float32)
        if self.spec.recipe.input_format == "rgb8":
            image = image / 255.0
            image = (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
        else:
            if self.spec.pixel_mean is not None:
                image = image - tf.constant(self.spec.pixel_mean)
            # mean-subtracted pixels in [-255, 255]
            image = image / 128.0
        if self.spec.data_format == "NCHW":
            image = tf.transpose(image, [0, 3, 1, 2])
        return image

    def _stem(self, image):
        if self.spec.layout.family == "imagenet":
            x = Conv2D("conv0", image, 64, 7, strides=2, activation=BNReLU)
            return MaxPooling("pool0", x, 3, strides=2, padding="SAME")
        return Conv2D("conv0", image, 16, 3, activation=BNReLU)

    def _verdict(self, block: str):
        """With ``inference_gates`` "training", outside training: 1.0 when training's moving
        average of the block's is_discarded says discarded (>= DISCARDED_AT), else 0.0; None
        otherwise (each batch decides, as in training). The moving average is the variable
        training's monitoring keeps (and checkpoints); a graph without a training tower (evaluate,
        compress, export) makes it here to restore it into."""
        if self.spec.inference_gates != "training" or get_current_tower_context().is_training:
            return None
        name = f"EMA/{block}/is_discarded"
        found = [v for v in tf.global_variables() if v.op.name == name]
        if found:
            average = found[0]
        else:
            with tf.name_scope(None), tf.variable_scope(tf.VariableScope(reuse=tf.AUTO_REUSE, name="")):
                average = tf.get_variable(name, initializer=0.0, dtype=tf.float32, trainable=False)
        return tf.cast(average.read_value() >= DISCARDED_AT, tf.float32)

    def body(self, image, label):
        """Build the network; returns (logits, side cross-entropy or None, [is_discarded])."""
        spec = self.spec
        block_fn = BLOCK_FUNCTIONS[spec.layout.block_type]
        epsilon = graph_scalar("epsilon", spec.epsilon) if self.gated else None
        discarded, peaks, side_xent = [], [], None
        # under oneDNN's bfloat16 rewrite, max|F| and the global averages by oneDNN's pooling
        pooled = spec.mixed_kind == "onednn_bfloat16"
        stays = spec.closed_gates == "stay" and get_current_tower_context().is_training
        x = self._stem(self._normalise(image))
        for block in spec.layout.blocks:
            with tf.variable_scope(block.name):
                branch, shortcut = block_fn(x, block.channels, block.stride, block.preactivated,
                                            spec.data_format, with_branch=not block.shortcut_only)
                if block.shortcut_only:
                    x = tf.identity(shortcut, name="output")
                elif self.gated:
                    x, is_discarded = GATES[spec.gate](
                        shortcut, branch, epsilon, stays_closed=stays,
                        verdict=_closed_for_good(block.name) if stays else self._verdict(block.name),
                        pooled=pooled)
                    discarded.append(is_discarded)
                    peaks.append(tf.get_default_graph().get_tensor_by_name(
                        f"{tf.get_default_graph().get_name_scope()}/gate/peak:0"))
                else:
                    x = tf.add(shortcut, branch, name="output")
            if self.has_side_output and block.name == spec.layout.side_after:
                _, side_xent = _classifier("side_output", x, label, spec.num_classes,
                                           self.top5, spec.data_format, pooled)
        logits, xent = _classifier("", x, label, spec.num_classes, self.top5, spec.data_format,
                                   pooled)
        return logits, xent, side_xent, discarded, peaks

    def build_graph(self, image, label):
        spec = self.spec
        conv_init, fc_init = OriginalVarianceScaling("fan_out"), OriginalVarianceScaling("fan_in")
        with argscope([Conv2D, MaxPooling, AvgPooling, BatchNorm],
                      data_format=spec.data_format), \
                argscope(Conv2D, use_bias=False, kernel_initializer=conv_init), \
                argscope(FullyConnected, kernel_initializer=fc_init):
            logits, xent, side_xent, discarded, peaks = self.body(image, label)
        tf.identity(logits, name="logits")
        tf.nn.softmax(logits, name="prob")

        wd_cost = tf.multiply(weight_decay(spec.recipe), regularize_cost(".*/W", tf.nn.l2_loss),
                              name="wd_cost")
        losses = [xent, wd_cost]
        if side_xent is not None:
            losses.append(tf.multiply(spec.recipe.side_loss_weight, side_xent, name="side_loss"))
        cost = tf.add_n(losses, name="cost")
        add_moving_summary(cost, wd_cost)

        if discarded:
            cnt = tf.add_n(discarded, name="discarded_cnt")
            ratio = tf.divide(cnt, float(len(discarded)), name="discarded_ratio")
            # Moving averages (decay 0.95, kept by tensorpack in the main training tower only):
            # the per-block values are what compression and the per-group figures read; the
            # branches' max|F| (what the gate compares with ε) is kept beside them.
            averages = add_moving_summary(cnt, ratio, *discarded, *peaks)
            if spec.closed_gates == "stay" and averages:  # the main training tower
                gated = [b.name for b in spec.layout.blocks if not b.shortcut_only]
                for block, average in zip(gated, averages[2:2 + len(discarded)]):
                    _close_for_good_when_discarded(block, average)
        _checkpoint_moving_averages()
        return cost

    def optimizer(self):
        recipe = self.spec.recipe
        lr = graph_scalar("learning_rate", recipe.initial_lr)
        opt = tf.train.MomentumOptimizer(lr, recipe.momentum, use_nesterov=recipe.nesterov)
        if self.spec.mixed_kind == "cuda_float16_loss_scaling":
            # TensorFlow's GPU rewrite to float16, with dynamic loss scaling so that small
            # gradients do not underflow (the CPU's bfloat16 rewrite needs none)
            opt = tf.mixed_precision.enable_mixed_precision_graph_rewrite(opt, loss_scale="dynamic")
        return opt
