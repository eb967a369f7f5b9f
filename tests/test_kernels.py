"""Eigen's CPU kernel for convolution input gradients on small maps (training.kernels): which ops
get it, that TensorFlow honours the choice, and that it computes the same gradient."""
import numpy as np
import pytest

from eps_resnet.training.kernels import EIGEN_LABEL, set_kernel_label, use_eigen_on_small_maps
from helpers import build


def labelled(g):
    return sorted(op.name for op in g.get_operations()
                  if op.node_def.attr["_kernel"].s == EIGEN_LABEL)


@pytest.mark.parametrize("family,depth", [("cifar", 8), ("imagenet", 18)])
def test_exactly_the_input_gradients_of_filters_larger_than_1x1_on_2x2_maps_or_smaller(
        tf, family, depth):
    g, _, _ = build(tf, family, depth, "standard", size=16, gradients=True)
    # from the forward convolutions: those with a 3x3 filter and an output of at most 2x2
    # pixels whose input is not the image (the image needs no gradient)
    small = [op for op in g.get_operations() if op.type == "Conv2D"
             and op.outputs[0].shape[1] * op.outputs[0].shape[2] <= 4
             and op.inputs[1].shape[0] > 1]
    assert use_eigen_on_small_maps(g) == len(small) == len(labelled(g))
    assert all(g.get_operation_by_name(n).type == "Conv2DBackpropInput" for n in labelled(g))
    # ResNet-18 on 16x16 images ends on 2x2 and 1x1 maps: its last two stages' 3x3
    # convolutions; the CIFAR family stops at 4x4 there, so its graphs (and the golden run's
    # bits) are unchanged
    assert len(small) == {"imagenet": 12, "cifar": 0}[family]


def test_tensorflow_runs_the_labelled_kernel_and_it_gives_the_same_gradient(tf):
    rng = np.random.RandomState(0)
    x0 = rng.rand(4, 1, 1, 64).astype(np.float32)
    w0 = rng.randn(3, 3, 64, 32).astype(np.float32)
    results = {}
    for label in (None, EIGEN_LABEL, b"no_such_kernel"):
        g = tf.Graph()
        with g.as_default():
            x, w = tf.Variable(x0), tf.Variable(w0)
            y = tf.nn.conv2d(x, w, 1, "SAME")
            grad = tf.gradients(tf.reduce_sum(tf.sin(y)), [x])[0]
            if label is not None:
                set_kernel_label(grad.op, label)
            with tf.Session() as sess:
                if label == b"no_such_kernel":
                    # the label is read when the session places the graph: a wrong one has no
                    # kernel
                    with pytest.raises(tf.errors.InvalidArgumentError,
                                       match='_kernel="no_such_kernel"'):
                        sess.run(tf.global_variables_initializer())
                    continue
                sess.run(tf.global_variables_initializer())
                results[label] = sess.run(grad)
    np.testing.assert_allclose(results[EIGEN_LABEL], results[None], rtol=1e-5, atol=1e-5)
