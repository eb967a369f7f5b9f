"""Which TensorFlow CPU kernel computes a convolution's input gradient on small feature maps.

With oneDNN's graph rewrites off (portable CPU kernels; also TensorFlow's default on AMD CPUs),
``Conv2DBackpropInput`` runs TensorFlow's "custom" CPU kernel, which loops over the images of
the batch and, for each, multiplies that image's output gradient with the whole filter. On a map
of one or four pixels that product is a matrix-vector product that reads the whole filter again
for every image: a 3x3 convolution with 512 channels on 1x1 maps at batch 32 took 267 ms there,
and 20 ms with TensorFlow's other CPU kernel for the op (kernel label "eigen_tensor", Eigen's
spatial convolution gradient, one contraction over the whole batch); on 2x2 maps with 128
channels, 11 against 2 ms. On maps of 4x4 and larger neither kernel is consistently the faster
(the custom one took 0.5 to 1.6 times Eigen's time on the shapes of both families), so they keep
TensorFlow's default. ``python benchmarks/input_gradient_kernels.py`` prints the table for the
machine it runs on (the figures above: a 2-core AVX2 AMD EPYC, one thread).

The ImageNet-family networks reach such maps on small images (ResNet-18 on the demo's 16x16
digits ends on 1x1 maps with 512 channels), where the custom kernel took 1.07 of the 1.30 s of a
training step. :func:`use_eigen_on_small_maps` gives those gradients Eigen's kernel: 110
instead of 24 images per second for that network at batch 32 (the benchmark's second table).
The CIFAR family never gets there (its smallest maps are a quarter of the image's side, 4x4 at
the smallest image size training accepts), so its graphs, and its bits, are left as they were.
"""
from __future__ import annotations

#: TensorFlow's kernel label of the Eigen kernel for Conv2DBackpropInput on CPUs.
EIGEN_LABEL = b"eigen_tensor"
#: Output maps of at most this many pixels (2x2) get Eigen's kernel.
SMALL_MAP_PIXELS = 4


def _is_small_map_gradient(op) -> bool:
    """Conv2DBackpropInput of an NHWC convolution with a filter larger than 1x1 whose output
    map (the incoming gradient's) has at most SMALL_MAP_PIXELS pixels. A 1x1 filter reads
    little per image; Eigen's kernel was the slower one there (0.8 against 1.1 ms)."""
    if op.type != "Conv2DBackpropInput" or op.get_attr("data_format") != b"NHWC":
        return False
    grad, filt = op.inputs[2].shape, op.inputs[1].shape
    if grad.rank != 4 or filt.rank != 4 or None in (grad[1], grad[2], filt[0], filt[1]):
        return False
    return grad[1] * grad[2] <= SMALL_MAP_PIXELS and filt[0] * filt[1] > 1


def use_eigen_on_small_maps(graph) -> int:
    """Label the small-map input gradients of ``graph`` for Eigen's CPU kernel; returns how many.

    Only for graphs that run on the CPU with oneDNN's rewrites off: TensorFlow's GPU kernels
    carry no such label, and oneDNN's rewrite replaces the op (label and all) with its own."""
    ops = [op for op in graph.get_operations() if _is_small_map_gradient(op)]
    for op in ops:
        set_kernel_label(op, EIGEN_LABEL)
    return len(ops)


def set_kernel_label(op, label: bytes) -> None:
    """Ask for the kernel registered under ``label`` for ``op`` (TensorFlow reads the node's
    ``_kernel`` attribute when a session places the graph).

    TensorFlow has no public way to choose a kernel by its label (checked against TensorFlow
    2.21: ``Graph._kernel_label_map`` is private too), so this is the project's one use of
    ``Operation._set_attr``; tests/test_kernels.py::
    test_tensorflow_runs_the_labelled_kernel_and_it_gives_the_same_gradient fails if a
    TensorFlow release stops honouring it."""
    from tensorflow.core.framework import attr_value_pb2

    op._set_attr("_kernel", attr_value_pb2.AttrValue(s=label))


def onednn_rewrites_on() -> bool:
    """Whether this process's TensorFlow replaces its CPU kernels by oneDNN's."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())
