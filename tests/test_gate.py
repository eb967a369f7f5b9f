"""The gate against the paper's literal four-ReLU formula, which stays here as the reference."""
import contextlib
import shutil

import numpy as np
import pytest
from helpers import compiler_here

from eps_resnet.models.gate import GATE_L


def literal_gate(tf, F, eps, L=GATE_L):
    """The paper's formula, written exactly as published: four ReLUs and one multiply."""
    s = tf.reduce_max(tf.nn.relu(F - eps) + tf.nn.relu(-F - eps))
    r3 = tf.nn.relu(-L * s + 1.0)
    T = tf.nn.relu(-L * r3 + 1.0)
    return T * F, 1.0 - T


@contextlib.contextmanager
def peak_op_switched(on: bool):
    """Gates built inside use the max|F| kernel (where it can be built) or TensorFlow's
    reductions (``EPS_RESNET_PEAK_OP=off``)."""
    from eps_resnet.models import peak_op

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(peak_op.SWITCH, "on" if on else "off")
        peak_op._loaded.cache_clear()
        try:
            yield
        finally:
            peak_op._loaded.cache_clear()


@pytest.fixture(scope="module", params=["kernel", "reductions", "pooled"])
def gate_graph(tf, request):
    """One graph with the fast gate (each way to max|F|: the CPU kernel where a compiler is,
    TensorFlow's max and min, the pooling of |F|) and the literal formula on the same inputs."""
    from eps_resnet.models.gate import gated_residual

    g = tf.Graph()
    with g.as_default(), peak_op_switched(request.param == "kernel"):
        F = tf.placeholder(tf.float32, [None, 4, 4, 3])
        shortcut = tf.placeholder(tf.float32, [None, 4, 4, 3])
        eps = tf.placeholder(tf.float32, [])
        out, disc = gated_residual(shortcut, F, eps, pooled=request.param == "pooled")
        types = {op.type for op in g.get_operations()}
        kernel = request.param == "kernel" and compiler_here()
        assert ("PeakMagnitude" in types) == kernel and ("Min" in types) == (
            request.param == "reductions" or request.param == "kernel" and not kernel)
        ref_s, ref_disc = literal_gate(tf, F, eps)
        ref_out = shortcut + ref_s
        up = tf.placeholder(tf.float32, [None, 4, 4, 3])  # upstream gradient
        grad = tf.gradients(out, F, grad_ys=up)[0]
        ref_grad_f = tf.gradients(ref_out, F, grad_ys=up)[0]
        sess = tf.Session(graph=g)

    def run(f, eps_value, sc=None, upstream=None):
        sc = np.zeros_like(f) if sc is None else sc
        upstream = np.ones_like(f) if upstream is None else upstream
        feed = {F: f, shortcut: sc, eps: eps_value, up: upstream}
        o, d, ro, rd, gr, rg = sess.run([out, disc, ref_out, ref_disc, grad, ref_grad_f], feed)
        return dict(out=o, disc=d, ref_out=ro, ref_disc=rd, grad=gr, ref_grad=rg)

    yield run
    sess.close()


def test_all_below_epsilon_output_is_shortcut_and_discarded(gate_graph):
    rng = np.random.RandomState(0)
    f = rng.uniform(-2.49, 2.49, (2, 4, 4, 3)).astype(np.float32)
    sc = rng.normal(size=f.shape).astype(np.float32)
    r = gate_graph(f, 2.5, sc)
    assert r["disc"] == 1.0
    np.testing.assert_array_equal(r["out"], sc)  # S(F) is exactly 0
    np.testing.assert_array_equal(r["ref_out"], sc)
    np.testing.assert_array_equal(r["grad"], np.zeros_like(f))  # closed gate passes no gradient


def test_one_element_above_epsilon_keeps_whole_branch(gate_graph):
    f = np.full((2, 4, 4, 3), 0.1, np.float32)
    f[1, 2, 3, 0] = -2.6
    sc = np.ones_like(f)
    r = gate_graph(f, 2.5, sc)
    assert r["disc"] == 0.0
    np.testing.assert_array_equal(r["out"], sc + f)  # S(F) == F, every element
    np.testing.assert_array_equal(r["out"], r["ref_out"])


def test_gradient_flows_through_open_gate(gate_graph):
    rng = np.random.RandomState(1)
    f = rng.normal(0, 3, (2, 4, 4, 3)).astype(np.float32)
    up = rng.normal(size=f.shape).astype(np.float32)
    r = gate_graph(f, 2.5, upstream=up)
    assert r["disc"] == 0.0
    np.testing.assert_array_equal(r["grad"], up)
    np.testing.assert_allclose(r["grad"], r["ref_grad"], rtol=0, atol=0)


def test_epsilon_zero_keeps_every_nonzero_branch(gate_graph):
    f = np.zeros((1, 4, 4, 3), np.float32)
    f[0, 0, 0, 0] = 1e-3
    r = gate_graph(f, 0.0)
    assert r["disc"] == 0.0 and r["ref_disc"] == 0.0
    np.testing.assert_array_equal(r["out"], f)
    # An all-zero branch counts as discarded even at ε = 0 (its output is 0 either way).
    r = gate_graph(np.zeros_like(f), 0.0)
    assert r["disc"] == 1.0 and r["ref_disc"] == 1.0
    np.testing.assert_array_equal(r["out"], np.zeros_like(f))


@pytest.mark.parametrize("seed", range(5))
def test_fast_form_matches_literal_formula_on_random_tensors(gate_graph, seed):
    rng = np.random.RandomState(seed)
    f = rng.normal(0, rng.uniform(0.3, 3), (3, 4, 4, 3)).astype(np.float32)
    sc = rng.normal(size=f.shape).astype(np.float32)
    for eps in (0.0, 0.5, 1.0, 2.5, 4.0, float(np.abs(f).max())):
        r = gate_graph(f, eps, sc)
        assert r["disc"] == r["ref_disc"]
        np.testing.assert_array_equal(r["out"], r["ref_out"])
        np.testing.assert_array_equal(r["grad"], r["ref_grad"])


def test_fast_form_matches_literal_formula_at_and_next_to_epsilon(gate_graph):
    eps = np.float32(2.5)
    below, above = np.nextafter(eps, np.float32(0)), np.nextafter(eps, np.float32(10))
    tiny = np.float32(eps + 0.5 / GATE_L)  # inside the 1/L band: T is fractional
    for peak in (eps, -eps, below, -below, above, -above, tiny, -tiny):
        f = np.full((1, 4, 4, 3), 0.5, np.float32)
        f[0, 1, 1, 1] = peak
        sc = np.full_like(f, 0.25)
        r = gate_graph(f, float(eps), sc)
        assert r["disc"] == r["ref_disc"], peak
        np.testing.assert_array_equal(r["out"], r["ref_out"])
    # At exactly ±ε the branch is cut (|F| < ε fails, but relu(|F| - ε) is 0): the formula's
    # decision, which the fast form keeps.
    f = np.full((1, 4, 4, 3), eps, np.float32)
    assert gate_graph(f, float(eps))["disc"] == 1.0


def test_whichever_image_holds_the_peak_the_gate_decides_as_the_formula(gate_graph):
    """Under the bfloat16 rewrite an open gate is known from the batch's first images: the
    batch's decision must be the formula's when the first image opens it, when only a later one
    does, when a later one sits in the 1/L band and when none does (both forms, same cases)."""
    # with ε = 0, a peak of 9.999995e-7 is in the band (s just under 1/L): T = 0.523
    for eps, base, where, peak, disc in ((2.5, 0.5, (0, 1, 2, 0), 3.0, 0.0),
                                         (2.5, 0.5, (2, 3, 0, 2), -3.0, 0.0),
                                         (0.0, 1e-8, (1, 0, 0, 1), 9.999995e-7, None),
                                         (2.5, 0.5, (0, 0, 0, 0), 2.0, 1.0)):
        f = np.full((3, 4, 4, 3), base, np.float32)
        f[where] = peak
        sc = np.full_like(f, 0.25)
        r = gate_graph(f, eps, sc)
        assert r["disc"] == r["ref_disc"], (where, peak)
        assert disc is None and 0 < r["disc"] < 1 or r["disc"] == disc, (where, peak)
        np.testing.assert_array_equal(r["out"], r["ref_out"])
        if disc is not None:  # in the band the formula's T has a gradient, the gate's none
            np.testing.assert_array_equal(r["grad"], r["ref_grad"])


def peak_cases():
    """(name, float32 array) on which max|x| is easy to get wrong."""
    rng = np.random.RandomState(7)
    big = rng.normal(0, 2, (128, 32, 32, 16)).astype(np.float32)  # 64 chunks of the kernel
    odd = rng.normal(0, 2, 70001).astype(np.float32)  # 3 chunks, the last one short
    last_negative = odd.copy()
    last_negative[-1] = -50.0
    with_nan, with_inf = big.copy(), odd.copy()
    with_nan.flat[-1], with_inf.flat[12345] = np.nan, -np.inf
    subnormal = np.array([1e-45, -3e-40, 0.0], np.float32)  # TensorFlow's threads flush them
    smallest_normal = np.array([np.finfo(np.float32).tiny, -1e-40], np.float32)
    return [("big", big), ("odd", odd), ("last negative", last_negative), ("nan", with_nan),
            ("-inf", with_inf), ("subnormal", subnormal), ("smallest normal", smallest_normal),
            ("zeros", np.zeros((2, 3), np.float32)), ("one", np.array([-3.0], np.float32)),
            ("empty", np.zeros((0, 4), np.float32))]


def test_the_max_abs_kernel_equals_tensorflows_two_reductions(tf):
    """The gate's one-pass max|F| (models/peak_op.cc, on the session's 2 threads) against
    max(max F, -min F) by TensorFlow's ops: the same bits but for the sign of a zero; where
    there is no C++ compiler, no kernel (and the gate keeps the reductions)."""
    from eps_resnet.models.peak_op import peak_magnitude_op

    with peak_op_switched(True):
        op = peak_magnitude_op()
    assert (op is not None) == compiler_here()
    if op is None:
        return
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32)
        kernel, reductions = op(x), tf.maximum(tf.reduce_max(x), -tf.reduce_min(x))
        with tf.Session(config=tf.ConfigProto(intra_op_parallelism_threads=2)) as sess:
            for name, value in peak_cases():
                got, expected = sess.run([kernel, reductions], {x: value})
                if np.isnan(expected):
                    assert np.isnan(got), name
                else:
                    assert got == expected and (got == 0 or got.view(np.uint32) ==
                                                expected.view(np.uint32)), (name, got, expected)


def test_a_kernel_that_cannot_be_built_says_why_and_leaves_nothing(tmp_path, monkeypatch):
    from eps_resnet.models.peak_op import BuildError, NoCompiler, build

    monkeypatch.setenv("CXX", shutil.which("false"))  # a compiler that fails
    with pytest.raises(BuildError, match=r"false failed: exit status 1$"):
        build(tmp_path)
    monkeypatch.setenv("CXX", str(tmp_path / "c++"))
    with pytest.raises(NoCompiler, match=r"^no C\+\+ compiler \(.*c\+\+\) on PATH$"):
        build(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_fixed_verdict_decides_the_output_and_is_discarded_reports_the_batch(tf):
    """--inference-gates training: the verdict of training's moving average (1 = discarded)
    decides the block's output whatever this batch's max|F|; is_discarded still says what the
    batch alone would have decided."""
    from eps_resnet.models.gate import gated_residual

    rng = np.random.RandomState(1)
    f = rng.uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    f[0, 0, 0, 0] = 5.0  # above ε: the batch's own gate is open
    sc = rng.normal(size=f.shape).astype(np.float32)
    with tf.Graph().as_default(), tf.Session() as sess:
        verdict = tf.placeholder(tf.float32, [])
        out, disc = gated_residual(tf.constant(sc), tf.constant(f), 2.5, verdict=verdict)
        closed = sess.run([out, disc], {verdict: 1.0})
        kept = sess.run([out, disc], {verdict: 0.0})
    np.testing.assert_array_equal(closed[0], sc)
    np.testing.assert_array_equal(kept[0], sc + f)
    assert closed[1] == kept[1] == 0.0  # the batch alone keeps the block


def test_closed_gates_stay_closed_once_the_average_says_discarded(tf):
    """--closed-gates stay: the latch (set when training's moving average of is_discarded
    reaches 0.5, never reset) closes the gate whatever the batch's max|F|, and is_discarded
    reports the decision the network took, so the average cannot fall back."""
    from tensorpack.utils.naming import MOVING_SUMMARY_OPS_KEY

    from eps_resnet.models.gate import gated_residual
    from eps_resnet.models.resnet import _close_for_good_when_discarded, _closed_for_good

    f = np.full((2, 4, 4, 3), 0.5, np.float32)
    sc = np.full_like(f, 0.25)
    with tf.Graph().as_default(), tf.Session() as sess:
        peak = tf.placeholder(tf.float32, [])
        branch = tf.constant(f) * peak
        latch = _closed_for_good("res1.0")
        out, disc = gated_residual(tf.constant(sc), branch, 2.5, verdict=latch, stays_closed=True)
        average = tf.placeholder(tf.float32, [])
        _close_for_good_when_discarded("res1.0", average)
        (update,) = tf.get_collection(MOVING_SUMMARY_OPS_KEY)
        sess.run(tf.global_variables_initializer())
        opened = sess.run([out, disc], {peak: 10.0})  # max|F| 5 > ε, latch open
        np.testing.assert_array_equal(opened[0], sc + 10 * f)
        assert opened[1] == 0.0
        assert sess.run(disc, {peak: 1.0}) == 1.0  # the batch alone closes it, as in the original
        for value, latched in ((0.3, 0.0), (0.6, 1.0), (0.2, 1.0)):
            sess.run(update, {average: value})
            assert sess.run(latch) == latched, value
        closed = sess.run([out, disc], {peak: 10.0})
    np.testing.assert_array_equal(closed[0], sc)  # closed for good, whatever the batch says
    assert closed[1] == 1.0


def test_inference_gates_settings():
    from eps_resnet.training.settings import SettingsError, TrainSettings

    base = dict(dataset="synthetic", depth=8, out="x")
    s = TrainSettings(**base, variant="epsilon", epsilon=1.0).resolved()
    assert s.inference_gates == "batch"  # the original's
    assert TrainSettings(**base, variant="epsilon", epsilon=1.0,
                         inference_gates="training").resolved().inference_gates == "training"
    with pytest.raises(SettingsError, match="^--inference-gates training is only for --variant epsilon"):
        TrainSettings(**base, variant="standard", inference_gates="training").resolved()
    with pytest.raises(SettingsError, match="^--inference-gates 'moving' is unknown"):
        TrainSettings(**base, variant="epsilon", epsilon=1.0, inference_gates="moving").resolved()
    assert s.closed_gates == "reopen"  # the original's
    with pytest.raises(SettingsError, match="^--closed-gates stay is only for --variant epsilon"):
        TrainSettings(**base, variant="side", closed_gates="stay").resolved()
    with pytest.raises(SettingsError, match="^--closed-gates 'never' is unknown"):
        TrainSettings(**base, variant="epsilon", epsilon=1.0, closed_gates="never").resolved()


def test_a_gate_added_through_the_registry_trains(tmp_path):
    """A gate is one registered function: this one never cuts, so with an ε no response
    reaches, the paper's gate discards every block and it none."""
    from eps_resnet.cli import main
    from eps_resnet.compat import import_tf
    from eps_resnet.models.gate import GATES, register_gate
    from eps_resnet.training.runfolder import load_run_file, read_stats
    from eps_resnet.training.settings import SettingsError, TrainSettings

    @register_gate("never_cuts")
    def never_cuts(shortcut, branch, epsilon, verdict=None, stays_closed=False, pooled=False):
        tf = import_tf()
        with tf.name_scope("gate"):
            tf.reduce_max(tf.abs(tf.cast(branch, tf.float32)), name="peak")
        return tf.add(shortcut, branch, name="output"), tf.constant(0.0, name="is_discarded")

    try:
        discarded = {}
        for gate in ("strict_identity", "never_cuts"):
            out = tmp_path / gate
            assert main(["train", "--dataset", "synthetic", "--depth", "8", "--variant", "epsilon",
                         "--epsilon", "1e9", "--gate", gate, "--epochs", "1", "--steps-per-epoch",
                         "1", "--batch", "8", "--out", str(out)]) == 0
            assert load_run_file(str(out))["settings"]["gate"] == gate
            row = read_stats(str(out))[-1]
            discarded[gate] = {k: v for k, v in row.items() if k.endswith("/is_discarded")}
        # (moving averages of is_discarded, debiased: 1 - 2e-7 after one step)
        assert discarded["strict_identity"] and min(discarded["strict_identity"].values()) > 0.999
        assert discarded["never_cuts"].keys() == discarded["strict_identity"].keys()
        assert max(discarded["never_cuts"].values()) < 0.001
        with pytest.raises(SettingsError, match="^--gate never_cuts is only for --variant epsilon"):
            TrainSettings("synthetic", 8, "standard", "x", gate="never_cuts").resolved()
    finally:
        GATES.pop("never_cuts")
    with pytest.raises(SettingsError, match="^--gate 'never_cuts' is unknown; expected one of "
                                            "strict_identity$"):
        TrainSettings("synthetic", 8, "epsilon", "x", epsilon=1.0, gate="never_cuts").resolved()
