"""The strict-identity gate of ε-ResNet (the paper's sparsity-promoting function).

For a residual branch output F (the whole batch x H x W x C tensor) the paper defines

    s  = max_i ( relu(F_i - ε) + relu(-F_i - ε) )
    T  = relu(-L * relu(-L * s + 1) + 1)
    S(F) = T * F

so ``S(F) = 0`` when every |F_i| < ε and ``S(F) = F`` otherwise: one decision per block per batch.

This module computes the same function in a cheaper form (measured in
``benchmarks/train_throughput.py`` and ``benchmarks/mixed_precision_graph.py``; the literal
formula is kept in ``tests/test_gate.py`` as the reference):

* ``relu(F - ε) + relu(-F - ε) == relu(|F| - ε)`` element-wise, and relu is monotone, so
  ``s = relu(max|F| - ε)``, with ``max|F| = max(max F, -min F)``: two reductions over F instead
  of four full-size temporaries. In float32 on CPUs, one pass of the package's own kernel
  (:mod:`.peak_op`, compiled on first use where a C++ compiler is) reads F once for the same
  value. Under oneDNN's bfloat16 rewrite on CPUs, whose reductions
  convert every element to float32, max|F| is taken by oneDNN's max pooling of |F| (one window
  per image and channel, bfloat16 compared as such) and a reduction of the N x C maxima
  (``pooled``): the same value, at 0.65 against 1.69 ms for 2.1 M elements on an AMX Xeon.
* T is a saturated step whose derivative with respect to F vanishes outside a band of width 1/L,
  so the decision is computed from ``stop_gradient(F)``; the gradient of ``T * F`` with respect to
  F, which is T, is untouched.
* T is exactly 0 or 1 except for ``0 < s < 1/L``; in those two cases the block output is selected
  with ``tf.cond`` (``shortcut + F`` or ``shortcut``) instead of a full-size multiply by T.  Only the
  band case multiplies, so the output equals ``shortcut + T * F`` for every input.
* Under the bfloat16 rewrite the output's selection waits only for the T of the batch's first
  images when that is 1 (:func:`first_images_open`): T rises with max|F|, so the batch's T is
  then 1 too. The whole batch's T still decides ``is_discarded`` and every other case.
"""
from __future__ import annotations

from ..compat import import_tf
from .peak_op import peak_magnitude_op

#: The slope of the gate's ReLUs; the original implementation uses 1e6.
GATE_L = 1e6
#: The monitoring's verdict: a block counts as discarded when the moving average of its
#: ``is_discarded`` (1 - T per batch) is at least this. Figures, summary and compression read it
#: from here (this module builds no graph when imported, so they need not start TensorFlow).
DISCARDED_AT = 0.5
#: Fully closed: the moving average has reached 1 (up to float32 rounding of the debiased
#: average), the only blocks the original implementation's compression script removed.
CLOSED_AT = 1.0 - 1e-6


def gate_value(branch, epsilon, L: float = GATE_L, pooled: bool = False):
    """The scalar T of the gate for a branch output (0: discarded, 1: open), float32.

    ``pooled``: max|F| as the max of the max pooling of |F| over each NHWC map rather than
    max(max F, -min F) (for the oneDNN bfloat16 rewrite, see the module's docstring). A float32
    branch on a machine without GPUs takes max|F| from :func:`.peak_op.peak_magnitude_op`'s
    kernel where it could be built: the same value (but for the sign of a zero).

    The decision is exact whatever precision the branch is computed in: the reductions read
    the branch in its own dtype (the max, min and magnitudes of bfloat16 or float16 values are
    such values, so nothing is lost and no full-size cast is made), and only that scalar is
    converted to float32; ε and the rest of the formula stay float32 (2.3 is not a bfloat16 number).
    """
    tf = import_tf()
    with tf.name_scope("gate"):
        f = tf.stop_gradient(branch)
        if pooled:
            # TensorFlow's CPU reductions in bfloat16 convert each element to float32: the max
            # of |F| took 1.69 ms per 2.1 M elements, oneDNN's pooling of |F| and the max of
            # the pooled 0.65 (a copy of F: 0.44), benchmarks/mixed_precision_graph.py
            side = branch.shape.as_list()[1:3]
            maxima = tf.nn.max_pool2d(tf.abs(f), side, side, "VALID", data_format="NHWC")
            peak = tf.reduce_max(maxima, name="Max")
        else:
            peak_op = peak_magnitude_op() if f.dtype == tf.float32 else None
            if peak_op is not None:  # one pass over F on the CPU (models/peak_op.cc)
                peak = peak_op(f, name="Max")
            else:
                peak = peak_by_reductions(f)
        return gate_step(float32_fence(peak, name="peak"), epsilon, L)


def peak_by_reductions(f, name: str = "Max"):
    """max|F| by TensorFlow's ops: two reductions reading F, no full-size |F| temporary (the
    gate's form where its CPU kernel is not used)."""
    tf = import_tf()
    return tf.maximum(tf.reduce_max(f), -tf.reduce_min(f), name=name)


def gate_step(peak, epsilon, L: float = GATE_L):
    """T from a float32 max|F|: the formula's ε arithmetic, relu(-L relu(-L relu(peak - ε) + 1)
    + 1), in float32."""
    tf = import_tf()
    s = tf.nn.relu(peak - tf.cast(epsilon, tf.float32))
    r3 = tf.nn.relu(-L * s + 1.0)
    return tf.nn.relu(-L * r3 + 1.0, name="T")


def float32_fence(x, name: str = "float32_fence"):
    """``x`` (a scalar) as float32, past a point that TensorFlow's mixed-precision graph rewrites
    do not cross.

    The rewrites (oneDNN bfloat16 on CPUs, float16 on GPUs) convert chains of float ops after
    the graph is built, when everything is still float32: a ``tf.cast`` to float32 adds no op
    and would not stop them turning the gate's ε arithmetic into bfloat16 (where L = 1e6 and a
    rounded ε flip decisions). A round trip through int32 bitcasts, which they leave alone,
    keeps everything after it in float32; they put their own cast of the scalar before it."""
    tf = import_tf()
    x = tf.cast(x, tf.float32)
    return tf.bitcast(tf.bitcast(x, tf.int32), tf.float32, name=name)


#: The gates an ε-ResNet can use (``--gate``, config key ``gate``), by name: see :func:`register_gate`.
GATES: dict = {}


def register_gate(name: str):
    """Add the decorated function to :data:`GATES` as the gate ``name``.

    A gate joins one block's ``shortcut`` and residual ``branch`` (tensors of one shape, in the
    block's variable scope) given ``epsilon`` (a float32 scalar variable) and the keywords of
    :func:`gated_residual` (``verdict``, ``stays_closed``, ``pooled``), and returns ``(output,
    is_discarded)``, is_discarded a float32 scalar (1.0: the branch was cut on this batch), which
    monitoring, the adaptive learning rate and compression read. It must also name the float32
    scalar its decision compares with ε ``gate/peak`` (logged per block as ``gate/peak``)."""
    def add(gate):
        GATES[name] = gate
        return gate
    return add


@register_gate("strict_identity")
def gated_residual(shortcut, branch, epsilon, L: float = GATE_L, verdict=None,
                   stays_closed: bool = False, pooled: bool = False):
    """``shortcut + S(branch)`` with the strict-identity gate.

    Returns ``(output, is_discarded)`` where ``is_discarded = 1 - T`` is the float32 scalar that the
    monitoring averages (1.0 when the whole branch was cut on this batch). The branch's max|F|,
    which the gate compares with ε, is the tensor ``gate/peak`` of the calling scope.

    ``verdict`` (a float32 scalar, 1.0 = discarded), when given, decides the output instead of
    this batch's T (is_discarded still reports the batch's own decision): the network a fixed
    verdict prunes, at inference (see ResNetModel._verdict).

    ``stays_closed`` (training with ``--closed-gates stay``): the batch's T closes the gate as
    usual, and so does ``verdict`` (training's moving average of is_discarded, before this
    step); is_discarded reports that combined decision, so once the average says discarded it
    only rises, and the gate stays closed for the rest of training.

    ``pooled``: see :func:`gate_value`.
    """
    tf = import_tf()
    t = gate_value(branch, epsilon, L, pooled)
    # the same value as t; under the bfloat16 rewrite, known sooner when the gate is open (not
    # built where a fixed verdict alone decides)
    decides = verdict is None or stays_closed
    sooner = first_images_open(t, branch, epsilon, L) if pooled and decides else t
    if stays_closed:
        # this step's decision must read the average before this step's update of it, which
        # takes is_discarded as its input
        decision = sooner * (1.0 - verdict)
        with tf.control_dependencies([decision]):
            is_discarded = tf.subtract(1.0, decision, name="is_discarded")
    else:
        decision = sooner if verdict is None else 1.0 - verdict
        is_discarded = tf.subtract(1.0, t, name="is_discarded")
    return select_output(shortcut, branch, t, decision), is_discarded


def select_output(shortcut, branch, t, decision):
    """``shortcut + T * branch`` for a decision equal to T (or to a verdict that overrides it):
    ``shortcut + branch`` when it is 1, ``shortcut`` when 0, the product only in between."""
    tf = import_tf()

    def open_gate():
        return shortcut + branch

    def closed_gate():
        return tf.identity(shortcut)

    def band():
        # 0 < s < 1/L: T is fractional; keep the paper's product exactly.
        return shortcut + tf.cast(t, branch.dtype) * branch

    output = tf.case(
        [(tf.equal(decision, 1.0), open_gate), (tf.equal(decision, 0.0), closed_gate)],
        default=band, exclusive=False)
    output.set_shape(shortcut.shape)
    return output


#: Under the bfloat16 rewrite an open gate is first looked for in this share of the batch
#: (its first images): on the demo's trained ε-networks, whose ε sits near their blocks'
#: responses, the first eighth of a batch opened 55 to 100% of the open gates, the first image
#: alone 14 to 74%.
FIRST_SHARE = 8


def first_images_open(t, branch, epsilon, L: float = GATE_L):
    """``t`` (the batch's T of ``branch``), as soon as the batch's first images (1/FIRST_SHARE
    of it) alone open the gate, else once ``t`` is computed.

    T is non-decreasing in max|F| (each step of its float32 formula rounds monotonically, and
    T <= 1), and the first images' max|F| is at most the batch's: when their T is 1, so is the
    batch's, and the value returned is t for every branch without NaNs. An open block's output
    then waits for a reduction of part of its branch; the whole branch's, which
    ``is_discarded`` and ``gate/peak`` still read, runs beside the following block. Under
    oneDNN's bfloat16 rewrite on an AMX Xeon that took the ε-ResNet-32 from 0.948-0.952 of the
    standard network's speed to 0.957-0.959 (``benchmarks/step_profile.py``). In float32 it
    gained nothing: there a reduction over an eighth of the branch costs about what one over
    all of it does (``benchmarks/gate_cost.py``). On a GPU each ``tf.cond`` copies its
    predicate to the host. So the gate uses it under the bfloat16 rewrite only.
    """
    tf = import_tf()
    with tf.name_scope("first_images"):
        share = tf.maximum(1, tf.shape(branch)[0] // FIRST_SHARE)
        first = gate_value(branch[:share], epsilon, L, pooled=True)
        return tf.cond(tf.equal(first, 1.0), lambda: tf.constant(1.0), lambda: tf.identity(t),
                       name="T")


def gate_disagreements(stats: dict) -> dict[str, list[str]]:
    """Blocks whose verdict at validation differs from training's, from one stats.json row:
    ``{"validation_only": [...], "training_only": [...]}``, block names whose gate was closed
    (at least DISCARDED_AT of the batches) only at validation, or only at training. Training
    uses the batch's statistics in its batch norms, validation the moving averages, so the
    same block can see different responses; empty lists for rows without validation gates."""
    found = {"validation_only": [], "training_only": []}
    for key, value in stats.items():
        if not key.endswith("/val_is_discarded"):
            continue
        block = key[:-len("/val_is_discarded")]
        trained = stats.get(f"{block}/is_discarded")
        if trained is None:
            continue
        at_val, at_train = value >= DISCARDED_AT, trained >= DISCARDED_AT
        if at_val != at_train:
            found["validation_only" if at_val else "training_only"].append(block)
    return found
