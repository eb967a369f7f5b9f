#!/usr/bin/env python
"""Where a gated network's extra time under mixed precision can come from, on any CPU: the
training graphs of standard and ε-ResNet after TensorFlow's oneDNN bfloat16 rewrite (run
offline through grappler, so no bfloat16 CPU is needed), and the cost of the gate's reductions
in bfloat16 against float32, with max|x| from x's bits and a copy of x for scale.

Part 1 counts, per variant, the ops on full-size tensors (more than 1,000 elements) by the dtype
the rewrite gave them, and the casts it inserted: a gate that forced float32 onto the branch
would show as full-size casts the standard graph lacks. (Ops inside the gate's ``tf.case``
branches have no static shape and are not counted: the block's sum and its reductions.) Part 2
times the gate's two ways to max|F| (under the rewrite max(abs(x)), otherwise max(x) and
min(x)) over a 128 x 32 x 32 x 16 tensor (the first stage's branch at batch 128) in both
dtypes, one thread.

    python benchmarks/mixed_precision_graph.py               # ResNet-32 (n = 5), batch 128
    python benchmarks/mixed_precision_graph.py --units 1 --batch 8 --repeat 2
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time

from eps_resnet.compat import use_cpu_kernels
from eps_resnet.models import DEFAULT_GATE
from eps_resnet.tables import markdown_table

FULL_SIZE = 1000
#: dtype enum values of TensorFlow's DataType
FLOAT32, BFLOAT16 = 1, 14
#: float32 ops that act on variables or write logs, not on activations
NOT_ACTIVATIONS = {"Const", "Identity", "VariableV2", "VarHandleOp", "ReadVariableOp", "Assign",
                   "ResourceApplyMomentum", "ScalarSummary"}


def training_graph(tf, variant: str, units: int, batch: int,
                   mixed_kind: str | None = "onednn_bfloat16", gate: str = DEFAULT_GATE):
    """(meta graph, graph) of a CIFAR-family model's training step (its train op in the graph's
    TRAIN_OP collection), built for ``mixed_kind`` (default the oneDNN bfloat16 rewrite) as
    training builds it; ``gate``: a name in the gate registry (models.gate.GATES)."""
    from tensorpack.tfutils.tower import TowerContext

    from eps_resnet.models import make_layout
    from eps_resnet.models.resnet import ModelSpec, ResNetModel
    from eps_resnet.training.recipe import RECIPES

    g = tf.Graph()
    with g.as_default():
        model = ResNetModel(ModelSpec(make_layout("cifar", 6 * units + 2), variant, 10, 32,
                                      RECIPES["synthetic"], epsilon=2.5,
                                      mixed_kind=mixed_kind, gate=gate))
        inputs = [tf.placeholder(s.dtype, [batch, *s.shape[1:]], s.name) for s in model.inputs()]
        with TowerContext("", is_training=True):
            cost = model.build_graph(*inputs)
        tf.add_to_collection(tf.GraphKeys.TRAIN_OP, model.optimizer().minimize(cost))
        return tf.train.export_meta_graph(graph=g), g


def rewritten(meta_graph):
    """The graph after grappler with TensorFlow's oneDNN bfloat16 rewrite on."""
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import cluster, tf_optimizer

    config = config_pb2.ConfigProto()
    options = config.graph_options.rewrite_options
    options.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    options.min_graph_nodes = -1
    return tf_optimizer.OptimizeGraph(config, meta_graph, cluster=cluster.Cluster())


def full_size_work(graph_def, g) -> dict:
    """{"bfloat16 ops" | "float32 ops" | "casts to bfloat16" | "casts to float32": [count,
    elements]} over the nodes of ``graph_def`` whose output has more than FULL_SIZE elements (the
    shapes are read from the graph before the rewrite, by node name)."""
    import numpy as np

    def elements(name):
        try:
            shape = g.get_operation_by_name(name).outputs[0].shape
        except (KeyError, IndexError):
            return 0
        if shape.rank is None or None in shape.as_list():
            return 0
        return int(np.prod(shape.as_list()))

    found = collections.defaultdict(lambda: [0, 0])
    for node in graph_def.node:
        if node.op == "Cast" and "AutoMixedPrecision" in node.name:
            kind = "casts to bfloat16" if "CastToBf16" in node.name else "casts to float32"
            n = elements(node.name.split("-0-Cast")[0])  # the tensor it converts
        elif node.op not in NOT_ACTIVATIONS and "T" in node.attr:
            dtype = node.attr["T"].type
            if dtype not in (FLOAT32, BFLOAT16):
                continue
            kind = "bfloat16 ops" if dtype == BFLOAT16 else "float32 ops"
            n = elements(node.name)
        else:
            continue
        if n > FULL_SIZE:
            found[kind][0] += 1
            found[kind][1] += n
    return found


def bits_max_abs(tf, x):
    """max|x| from x's bits, exactly, in two integer reductions that only read x: a float is a
    sign bit above bits that order magnitudes as integers, so the largest value of the bits
    read as signed integers is the largest positive magnitude (or, with no value >= +0, the
    largest negative one less the sign bit), and read as unsigned the largest negative
    magnitude plus the sign bit (or the largest positive one): the larger of the two with the
    sign bit cleared is max|x|. The gate cannot use it under the bfloat16 rewrite, which casts
    the branch to float32 before a bitcast, an op it does not convert (see the README)."""
    signed, unsigned, low = ((tf.int16, tf.uint16, 0x7FFF) if x.dtype == tf.bfloat16 else
                             (tf.int32, tf.uint32, 0x7FFFFFFF))
    a = tf.bitwise.bitwise_and(tf.reduce_max(tf.bitcast(x, signed)), tf.constant(low, signed))
    b = tf.bitwise.bitwise_and(tf.reduce_max(tf.bitcast(x, unsigned)), tf.constant(low, unsigned))
    return tf.bitcast(tf.maximum(a, tf.bitcast(b, signed)), x.dtype)


#: The gate's two ways to max|F| (under the bfloat16 rewrite, and otherwise), the one it used
#: under the rewrite before, max|x| from x's bits (two reads, the fewest of any way here), and a
#: copy of x: one read and one write of it, the physical cost the others are measured against.
REDUCTIONS = {
    "max pool of abs(x), then max: gate, bfloat16": lambda tf, x: tf.reduce_max(
        tf.nn.max_pool2d(tf.abs(x), [32, 32], [32, 32], "VALID")),
    "max(x), min(x): gate, float32": lambda tf, x: tf.maximum(tf.reduce_max(x),
                                                              -tf.reduce_min(x)),
    "max(abs(x)): the gate under bfloat16 before": lambda tf, x: tf.reduce_max(tf.abs(x)),
    "max of x's bits as signed and unsigned integers": bits_max_abs,
    "copy of x": lambda tf, x: tf.raw_ops.DeepCopy(x=x)[0, 0, 0, 0]}


def time_reductions(tf, repeat: int) -> dict:
    """ms of each of REDUCTIONS over a 128 x 32 x 32 x 16 tensor, per dtype, one thread:
    ``{(form, dtype name): ms}``."""
    g = tf.Graph()
    with g.as_default():
        fetches = {}
        for dtype in (tf.float32, tf.bfloat16):
            x = tf.Variable(tf.cast(tf.random.normal([128, 32, 32, 16], seed=1), dtype))
            for form, reduce in REDUCTIONS.items():
                fetches[form, dtype.name] = reduce(tf, x)
        config = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        with tf.Session(config=config) as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(fetches)
            for dtype in ("float32", "bfloat16"):  # every way to max|x| gives the same bits
                found = {float(v) for (form, d), v in values.items()
                         if d == dtype and not form.startswith("copy")}
                assert len(found) == 1, (dtype, found)
            return best_ms(sess, fetches, repeat)


def best_ms(sess, fetches: dict, repeat: int, rounds: int = 3) -> dict:
    """ms of one run of each of ``fetches`` (``{key: fetch}``): the best of ``rounds`` rounds
    of ``repeat`` runs, the fetches alternating, each run once first."""
    best = {}
    for _ in range(rounds):
        for key, fetch in fetches.items():
            sess.run(fetch)
            start = time.perf_counter()
            for _ in range(repeat):
                sess.run(fetch)
            ms = (time.perf_counter() - start) / repeat * 1000
            best[key] = min(best.get(key, float("inf")), ms)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--units", type=int, default=5, help="n (depth 6n+2), default %(default)s")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeat", type=int, default=20, help="runs of the reductions per round")
    args = p.parse_args()

    # the rewrite exists only with TensorFlow's oneDNN ops on
    use_cpu_kernels("native")
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    from eps_resnet.compat import import_tf
    from eps_resnet.training.provenance import cpu

    tf = import_tf()
    work = {}
    for variant in ("standard", "epsilon"):
        meta_graph, g = training_graph(tf, variant, args.units, args.batch)
        work[variant] = full_size_work(rewritten(meta_graph), g)
    ms = time_reductions(tf, args.repeat)

    info = cpu()
    print(f"\nResNet-{6 * args.units + 2}, batch {args.batch}: the training graph after "
          "TensorFlow's oneDNN bfloat16 rewrite (grappler, offline); ops and casts on tensors of "
          f"more than {FULL_SIZE:,} elements, as count / million elements")
    kinds = ("bfloat16 ops", "float32 ops", "casts to bfloat16", "casts to float32")
    print(markdown_table([[variant, *(f"{found[k][0]} / {found[k][1] / 1e6:.2f}" for k in kinds)]
                          for variant, found in work.items()], ["variant", *kinds]), end="")
    print(f"\nThe gate's reduction over 2.1 M elements, one thread, best of 3 rounds of "
          f"{args.repeat}, CPU ({os.cpu_count()} cores) {info['model']} "
          f"[{' '.join(info['flags'])}]")
    rows = [[form, f"{ms[form, 'float32']:.2f}", f"{ms[form, 'bfloat16']:.2f}",
             f"{ms[form, 'bfloat16'] / ms[form, 'float32']:.2f}"] for form in REDUCTIONS]
    print(markdown_table(rows, ["reduction", "float32 ms", "bfloat16 ms", "bfloat16 / float32"]),
          end="")


if __name__ == "__main__":
    sys.exit(main())
