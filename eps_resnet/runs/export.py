"""SavedModels that anyone can use: plain TensorFlow, raw images in, class probabilities out.

``serving_default`` maps ``input`` (uint8 RGB images, N x H x W x 3, values 0-255, H and W the
training size) to ``prob`` and ``logits``; the normalisation the network was trained with (the
per-pixel training mean of the CIFAR-family datasets, ImageNet's channel statistics) is inside
the graph, so a caller needs nothing from this package or from the prepared data.
"""
from __future__ import annotations

import logging
import os
import shutil

import numpy as np

from ..models.layouts import Layout, make_layout
from ..training.runfolder import choose_checkpoint, lock, read_checkpoint, reading, run_settings
from ..training.settings import TrainSettings
from .evaluate import check_fits, describe, run_kernels

LOG = logging.getLogger(__name__)


def input_mean(settings: TrainSettings) -> np.ndarray | None:
    """What is subtracted from raw pixels before the network's first layer, by the training
    dataflow or by the network itself (None: the model normalises uint8 RGB by channel, as
    the ImageNet pipeline delivers it)."""
    if settings.recipe.input_format == "rgb8":
        return None
    if settings.info.storage == "generated":  # generated around 0: raw pixels are value + 128
        return np.full((settings.image_size,) * 2 + (3,), 128.0, np.float32)
    from ..data.dataflows import training_mean

    return training_mean(settings)


def export_saved_model(settings: TrainSettings, layout: Layout, checkpoint: str, path: str) -> None:
    """Write the SavedModel of ``layout`` with the weights of ``checkpoint`` to ``path``."""
    from tensorpack.tfutils.tower import TowerContext

    from ..compat import import_tf
    from ..models.peak_op import tensorflow_ops_only
    from ..models.resnet import build_model

    tf = import_tf()
    model = build_model(settings, layout)
    # a network that takes uint8 subtracts the mean itself (build_model read it)
    mean = None if model.takes_uint8 else input_mean(settings)
    if os.path.exists(path):
        shutil.rmtree(path)
    with tf.Graph().as_default():
        size = settings.image_size
        raw = tf.placeholder(tf.uint8, [None, size, size, 3], "raw_input")
        # the network takes raw pixels where training fed it uint8 (and subtracts the mean)
        image = raw if model.takes_uint8 else tf.cast(raw, tf.float32) - tf.constant(mean)
        label = tf.zeros(tf.shape(raw)[:1], tf.int32)  # the graph's loss wants one; unused
        # a plain TensorFlow graph: the gate's max|F| without the package's own CPU kernel
        with TowerContext("", is_training=False), tensorflow_ops_only():
            model.build_graph(image, label)
        g = tf.get_default_graph()
        outputs = {k: g.get_tensor_by_name(f"{k}:0") for k in ("prob", "logits")}
        with tf.Session() as sess:
            tf.train.Saver().restore(sess, checkpoint)
            builder = tf.saved_model.Builder(path)
            signature = tf.saved_model.predict_signature_def(inputs={"input": raw}, outputs=outputs)
            builder.add_meta_graph_and_variables(
                sess, [tf.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": signature}, strip_default_attrs=True)
            builder.save()


def export(run_dir: str, out: str, step: int | None = None, data_dir: str | None = None) -> str:
    """The SavedModel of a trained run (any variant) at ``step`` (default: the newest)."""
    from ..models.resnet import build_model

    settings = run_settings(run_dir)
    if data_dir:
        settings.data_dir = data_dir
    settings = settings.resolved()
    run_kernels(settings)
    with reading(run_dir, "eps-resnet export"):
        checkpoint, step = choose_checkpoint(run_dir, step)
        layout = make_layout(settings.family, settings.depth)
        check_fits(build_model(settings, layout), read_checkpoint(checkpoint), checkpoint,
                   f"{run_dir} ({describe(settings)})")
        input_mean(settings)  # before anything is written: the mean must be there
        with lock(out, "eps-resnet export"):
            export_saved_model(settings, layout, checkpoint, out)
    LOG.info(f"{out}: SavedModel of {run_dir} at step {step} (uint8 {settings.image_size}x"
             f"{settings.image_size}x3 images in, prob and logits out)")
    return out
