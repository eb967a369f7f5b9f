"""Network layouts and the tensorpack model of both families."""
import numpy as np
import pytest

from eps_resnet.models import check_depth, make_layout
from eps_resnet.models.layouts import block_parameters, count_parameters
from helpers import build


def n_params(tf, g):
    with g.as_default():
        return sum(int(np.prod(v.shape)) for v in tf.trainable_variables())


@pytest.mark.parametrize("family,depth,expected", [
    ("cifar", 110, 1.7e6),      # ResNet-110 on CIFAR
    ("imagenet", 50, 25.5e6),   # ResNet-50
    ("imagenet", 101, 44.5e6),  # ResNet-101
])
def test_parameter_counts_of_the_baselines(tf, family, depth, expected):
    classes, size = (10, 32) if family == "cifar" else (1000, 224)
    g, _, _ = build(tf, family, depth, "standard", classes, size)
    n = n_params(tf, g)
    assert abs(n - expected) / expected < 0.02
    # the analytic count (used by the summary and compression) agrees exactly
    assert count_parameters(make_layout(family, depth), classes) == n


def test_initialiser_is_the_originals_truncated_variance_scaling(tf):
    """TF 1's variance_scaling_initializer(factor=2.0) as the original used it: a normal truncated
    at two deviations of sqrt(1.3 * 2 / n), n the fan-out of a convolution (kh * kw * out) and the
    fan-in of the fully connected layer; the truncated draw's variance is about 2.012 / n."""
    g, _, _ = build(tf, "cifar", 14, "side", classes=100)
    with g.as_default(), tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        weights = {v.op.name: sess.run(v) for v in tf.trainable_variables() if v.op.name.endswith("/W")}
    conv = weights["res3.0/conv2/W"]  # 3 x 3 x 64 x 64
    fc = weights["linear/W"]          # 64 x 100
    for w, n in ((conv, 3 * 3 * 64), (fc, 64)):
        sigma = np.sqrt(1.3 * 2.0 / n)
        assert np.abs(w).max() <= 2 * sigma  # truncated (an untruncated normal passes 2 sigma)
        assert w.var() * n == pytest.approx(2.012, rel=0.06)  # 4 standard errors
    assert np.abs(conv).max() > 1.9 * np.sqrt(1.3 * 2.0 / (3 * 3 * 64))


def test_gate_adds_no_trainable_variable(tf):
    g_side, _, _ = build(tf, "cifar", 14, "side")
    g_eps, _, _ = build(tf, "cifar", 14, "epsilon")
    g_std, _, _ = build(tf, "cifar", 14, "standard")
    with g_side.as_default():
        side_vars = sorted(v.name for v in tf.trainable_variables())
    with g_eps.as_default():
        eps_vars = sorted(v.name for v in tf.trainable_variables())
        eps_var = [v for v in tf.global_variables() if v.name == "epsilon:0"]
    assert eps_vars == side_vars
    assert len(eps_var) == 1 and eps_var[0] not in tf.trainable_variables()
    # the side head (after res2.1, 32 channels) is the only difference from the plain ResNet:
    # BN (gamma, beta) + FC(32 -> 10)
    assert n_params(tf, g_side) - n_params(tf, g_std) == 2 * 32 + 32 * 10 + 10
    assert count_parameters(make_layout("cifar", 14), 10, side_output=True) == n_params(tf, g_eps)


def test_epsilon_model_names_every_block_metric(tf):
    g, _, _ = build(tf, "imagenet", 18, "epsilon", 100, 64)
    names = {op.name for op in g.get_operations()}
    for block in make_layout("imagenet", 18).blocks:
        assert f"{block.name}/is_discarded" in names
    for name in ("discarded_cnt", "discarded_ratio", "side_output/incorrect_vector",
                 "incorrect_vector_top5", "wd_cost", "cost"):
        assert name in names


@pytest.mark.parametrize("family,depth,classes,size", [
    ("cifar", 8, 7, 48), ("imagenet", 18, 3, 32), ("imagenet", 50, 100, 64)])
def test_any_classes_and_input_sizes(tf, family, depth, classes, size):
    g, logits, (image, label) = build(tf, family, depth, "epsilon", classes, size)
    with g.as_default(), tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        out = sess.run(logits, {image: np.random.rand(2, size, size, 3) * 255,
                                label: np.zeros(2, np.int32)})
    assert out.shape == (2, classes) and np.isfinite(out).all()


@pytest.mark.parametrize("family,depth,size", [("cifar", 8, 32), ("imagenet", 18, 32)])
def test_nchw_and_nhwc_compute_the_same_network(tf, family, depth, size):
    """The GPU layout (NCHW) against the CPU one, with the same weights."""
    rng = np.random.RandomState(0)
    x = (rng.rand(4, size, size, 3) * 255).astype(np.float32)
    y = rng.randint(0, 10, 4).astype(np.int32)
    outputs, weights = [], None
    for fmt in ("NHWC", "NCHW"):
        g, logits, (image, label) = build(tf, family, depth, "epsilon", 10, size, fmt)
        with g.as_default(), tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            variables = {v.op.name: v for v in tf.global_variables()}
            if weights is None:
                weights = sess.run(variables)
            else:
                assert set(weights) == set(variables)
                for name, v in variables.items():
                    v.load(weights[name], sess)
            outputs.append(sess.run([logits, "discarded_cnt:0"], {image: x, label: y}))
    np.testing.assert_allclose(outputs[0][0], outputs[1][0], rtol=1e-4, atol=1e-4)
    assert outputs[0][1] == outputs[1][1]


def test_layouts():
    cifar = make_layout("cifar", 110)
    assert len(cifar.blocks) == 54 and [len(g) for g in cifar.groups] == [18, 18, 18]
    assert cifar.side_after == "res2.9"
    assert [b.stride for b in cifar.blocks if b.index == 0] == [1, 2, 2]
    assert make_layout("cifar", 8).side_after == "res2.0"
    r101 = make_layout("imagenet", 101)
    assert len(r101.blocks) == 33 and r101.side_after == "res3.8"
    assert r101.blocks[-1].channels == 2048
    assert len(make_layout("imagenet", 152).blocks) == 50
    assert make_layout("imagenet", 18).side_after == "res3.0"


@pytest.mark.parametrize("family,depth", [("cifar", 100), ("cifar", 6), ("imagenet", 110),
                                          ("imagenet", 20)])
def test_depth_not_of_the_family(family, depth):
    with pytest.raises(ValueError, match=f"--depth {depth} is not"):
        check_depth(family, depth)


def test_parameters_freed_by_discarded_blocks(tf):
    """Removing blocks from the graph frees what block_parameters says, shortcuts kept."""
    layout = make_layout("imagenet", 18)
    g, _, _ = build(tf, "imagenet", 18, "standard", 10, 32)
    with g.as_default():
        per_block = {}
        for v in tf.trainable_variables():
            name = v.op.name.split("/")[0]
            per_block.setdefault(name, {})[v.op.name] = int(np.prod(v.shape))
    for i, block in enumerate(layout.blocks):
        freed, kept = block_parameters(layout, i)
        own = per_block[block.name]
        shortcut = sum(n for k, n in own.items() if "convshortcut" in k)
        preact = sum(n for k, n in own.items() if "/preact/" in k)
        assert freed + kept == sum(own.values())
        assert kept == (shortcut + preact if shortcut else 0)
    full = count_parameters(layout, 10)
    assert count_parameters(layout, 10, discarded=["res2.0", "res4.1"]) == \
        full - block_parameters(layout, 2)[0] - block_parameters(layout, 7)[0]


@pytest.mark.parametrize("data_format, shape", [("NHWC", (3, 7, 7, 5)), ("NHWC", (2, 8, 8, 4)),
                                                ("NCHW", (3, 5, 7, 7))])
def test_global_average_is_tensorflows_mean_with_the_same_gradient_bits(tf, data_format, shape):
    """The classifiers' global average divides its gradient before spreading it over the maps:
    the mean and its gradient must be TensorFlow's, bit for bit (7 x 7: 1/49 is not exact)."""
    from eps_resnet.models.resnet import global_average

    rng = np.random.RandomState(0)
    axes = [1, 2] if data_format == "NHWC" else [2, 3]
    with tf.Graph().as_default(), tf.Session() as sess:
        x = tf.constant(rng.normal(size=shape).astype(np.float32))
        ours, theirs = global_average(x, data_format), tf.reduce_mean(x, axes)
        up = tf.constant(rng.normal(size=ours.shape.as_list()).astype(np.float32))
        grads = tf.gradients(ours, x, up)[0], tf.gradients(theirs, x, up)[0]
        (a, b), (ga, gb) = sess.run([(ours, theirs), grads])
    np.testing.assert_array_equal(a, b)
    assert ga.shape == shape and not np.all(ga == 0)
    np.testing.assert_array_equal(ga, gb)
