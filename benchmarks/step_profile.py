#!/usr/bin/env python
"""Where an ε-ResNet's training step spends the time a standard ResNet's does not: both
training graphs (the model, its optimizer and batch-norm updates, the session settings of a
run) in one process, single steps alternated so that a drifting machine slows both alike, then
TensorFlow's per-op trace of both, compared by op type and by part of the network.

Parts: the gate (|F|, its max, the ε arithmetic), the block selection (the gate's ``tf.case``:
switches, merges and the block's sum, which the standard network has too), the side output and
its gradient, and the rest; then per gated block the gate's time against a copy of its branch
(one pass that reads and writes the branch: the physical cost of reading it). fp32 runs the
native CPU kernels, as training does by default (``--cpu-kernels portable``: the portable
ones); mixed, oneDNN's native kernels and its bfloat16 rewrite (a CPU with bfloat16 only).

    python benchmarks/step_profile.py                        # ResNet-32, batch 128, fp32
    python benchmarks/step_profile.py --precision mixed
    python benchmarks/step_profile.py --units 1 --batch 8 --steps 4 --traces 1
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time

from eps_resnet.compat import use_cpu_kernels
from eps_resnet.models import DEFAULT_GATE
from eps_resnet.tables import markdown_table

VARIANTS = ("standard", "epsilon")
PARTS = ("gate", "block selection", "side output", "rest")


def part_of(node: str) -> str:
    if "/gate/" in node or "/first_images/" in node or node.endswith("is_discarded"):
        return "gate"
    if "/case/" in node:
        return "block selection"
    if "side_output" in node:
        return "side output"
    return "rest"


def training_step(tf, variant: str, units: int, batch: int, mixed: bool,
                  gate: str = DEFAULT_GATE):
    """A session and a training step of a synthetic-data ResNet of depth 6n+2 (an ε one with
    the registered gate ``gate``), and its feed."""
    import numpy as np

    from eps_resnet.compat import session_config
    from mixed_precision_graph import training_graph

    kind = "onednn_bfloat16" if mixed else None
    _, g = training_graph(tf, variant, units, batch, mixed_kind=kind, gate=gate)
    with g.as_default():
        step = tf.group(*tf.get_collection(tf.GraphKeys.TRAIN_OP),
                        *tf.get_collection(tf.GraphKeys.UPDATE_OPS))
        sess = tf.Session(config=session_config(0, kind))
        sess.run(tf.global_variables_initializer())
    image, label = g.get_tensor_by_name("input:0"), g.get_tensor_by_name("label:0")
    rng = np.random.RandomState(0)
    feed = {image: (rng.rand(*image.shape.as_list()) * 255).astype(image.dtype.as_numpy_dtype),
            label: rng.randint(0, 10, batch).astype(np.int32)}
    return sess, step, feed


def traced(tf, sess, step, feed, traces: int):
    """ms per step by op type, by part, by (part, op type) and by (block, part), averaged over
    ``traces`` traced steps (the sum over ops: with several threads it exceeds the step's wall
    time)."""
    by_type, by_part = collections.Counter(), collections.Counter()
    by_part_op, by_block = collections.Counter(), collections.Counter()
    for _ in range(traces):
        meta = tf.RunMetadata()
        sess.run(step, feed, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                 run_metadata=meta)
        for dev in meta.step_stats.dev_stats:
            for node in dev.node_stats:
                ms = (node.op_end_rel_micros - node.op_start_rel_micros) / 1000 / traces
                label = node.timeline_label
                op = label.split(" = ")[1].split("(")[0] if " = " in label else node.node_name
                part = part_of(node.node_name)
                by_type[op] += ms
                by_part[part] += ms
                by_part_op[part, op] += ms
                by_block[node.node_name.split("/")[0], part] += ms
    return by_type, by_part, by_part_op, by_block


def copy_ms(tf, shapes: dict, dtype, repeat: int = 20) -> dict:
    """ms of a copy of a tensor of each shape (``{name: shape}``) in ``dtype``: what one pass
    that reads a branch and writes its size costs on this machine (the session settings of a
    run, best of 3 rounds)."""
    from eps_resnet.compat import session_config
    from mixed_precision_graph import best_ms

    with tf.Graph().as_default():
        fetches = {}
        for name, shape in shapes.items():
            x = tf.Variable(tf.zeros(shape, dtype))
            fetches[name] = tf.raw_ops.DeepCopy(x=x)[0, 0, 0, 0]  # the copy, one value out
        with tf.Session(config=session_config(0)) as sess:
            sess.run(tf.global_variables_initializer())
            return best_ms(sess, fetches, repeat)


def network_arguments(p: argparse.ArgumentParser, steps: int) -> None:
    """The options that choose the networks and their timing (this script's and gate_cost's)."""
    p.add_argument("--units", type=int, default=5, help="n (depth 6n+2), default %(default)s")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--precision", choices=["fp32", "mixed"], default="fp32")
    p.add_argument("--steps", type=int, default=steps, help="timed steps per network, alternated")
    p.add_argument("--cpu-kernels", choices=["native", "portable"], default="native",
                   help="fp32's kernels (default native, training's default; mixed is native)")


def start_tensorflow(args, prog: str):
    """(tf, this CPU's description) with the CPU kernels that ``args`` ask for; exits with a
    message when --precision mixed asks for bfloat16 units this CPU lacks."""
    from eps_resnet.training.devices import BF16_CPU_FLAGS, has_bfloat16
    from eps_resnet.training.provenance import cpu

    info = cpu()
    mixed = args.precision == "mixed"
    if mixed and not has_bfloat16(info["flags"]):
        sys.exit(f"{prog}: --precision mixed needs a CPU with "
                 f"{' or '.join(BF16_CPU_FLAGS)}; this {info['model']} has neither")
    use_cpu_kernels("native" if mixed else args.cpu_kernels)
    from eps_resnet.compat import import_tf

    return import_tf(), info


def alternated(runs: dict, steps: int) -> dict:
    """Seconds of ``steps`` single steps of each of ``runs`` ({name: (session, step, feed)}),
    after 3 warm-up steps each (the rewrite and oneDNN's kernel choice happen there), the
    order reversed every other round so that a drifting machine slows all alike."""
    for sess, step, feed in runs.values():
        for _ in range(3):
            sess.run(step, feed)
    names = list(runs)
    times = {k: [] for k in names}
    for i in range(steps):
        for k in (names if i % 2 == 0 else names[::-1]):
            sess, step, feed = runs[k]
            start = time.perf_counter()
            sess.run(step, feed)
            times[k].append(time.perf_counter() - start)
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    network_arguments(p, steps=60)
    p.add_argument("--traces", type=int, default=5, help="traced steps per network")
    p.add_argument("--top", type=int, default=12, help="op types listed, by added time")
    args = p.parse_args()
    mixed = args.precision == "mixed"
    tf, info = start_tensorflow(args, "step_profile.py")
    runs = {v: training_step(tf, v, args.units, args.batch, mixed) for v in VARIANTS}
    times = alternated(runs, args.steps)
    profile = {v: traced(tf, *runs[v], args.traces) for v in VARIANTS}

    median = {v: statistics.median(t) * 1000 for v, t in times.items()}
    pairs = statistics.median(s / e for s, e in zip(times["standard"], times["epsilon"]))
    print(f"\nResNet-{6 * args.units + 2}, batch {args.batch}, {args.precision}, CPU "
          f"({len(times)} networks alternated step by step, {args.steps} steps each) "
          f"{info['model']} [{' '.join(info['flags'])}]")
    print(markdown_table([[f"{median['standard']:.1f}", f"{median['epsilon']:.1f}",
                           f"{median['standard'] / median['epsilon']:.3f}", f"{pairs:.3f}"]],
                         ["standard ms/step", "epsilon ms/step",
                          "standard / epsilon (median steps)", "median of the pairs' ratios"]),
          end="")
    std, eps = profile["standard"], profile["epsilon"]
    print(f"\nTraced op time per step by part (mean of {args.traces} traced steps, ms)")
    rows = [[part, f"{std[1][part]:.2f}", f"{eps[1][part]:.2f}",
             f"{eps[1][part] - std[1][part]:+.2f}"] for part in PARTS]
    total = (sum(std[1].values()), sum(eps[1].values()))
    rows.append(["all", f"{total[0]:.2f}", f"{total[1]:.2f}", f"{total[1] - total[0]:+.2f}"])
    print(markdown_table(rows, ["part", "standard", "epsilon", "added"]), end="")
    print(f"\nOp types by time added (top {args.top}, ms per step)")
    ops = sorted(set(std[0]) | set(eps[0]), key=lambda op: std[0][op] - eps[0][op])
    print(markdown_table([[op, f"{std[0][op]:.2f}", f"{eps[0][op]:.2f}",
                           f"{eps[0][op] - std[0][op]:+.2f}"] for op in ops[:args.top]],
                         ["op", "standard", "epsilon", "added"]), end="")
    print("\nThe ε network's own parts by op type (ms per step, ops above 0.05 ms)")
    own = sorted(eps[2].items(), key=lambda kv: (PARTS.index(kv[0][0]), -kv[1]))
    print(markdown_table([[part, op, f"{ms:.2f}"] for (part, op), ms in own
                          if part != "rest" and ms > 0.05], ["part", "op", "ms"]), end="")
    graph = runs["epsilon"][0].graph
    branches = {op.name.split("/")[0]: op.inputs[0] for op in graph.get_operations()
                if op.name.endswith("/gate/StopGradient") and op.name.count("/") == 2}
    copies = copy_ms(tf, {b: t.shape.as_list() for b, t in branches.items()},
                     tf.bfloat16 if mixed else tf.float32)
    print(f"\nPer gated block: the gate's traced time against a copy of the block's branch "
          f"({'bfloat16' if mixed else 'float32'}, timed alone), ms per step")
    rows = []
    for block in sorted(branches):
        gate, copy = eps[3][block, "gate"], copies[block]
        rows.append([block, "x".join(map(str, branches[block].shape.as_list())), f"{gate:.2f}",
                     f"{copy:.2f}", f"{gate / copy:.2f}"])
    gate, copy = sum(eps[3][b, "gate"] for b in branches), sum(copies.values())
    rows.append(["all", "", f"{gate:.2f}", f"{copy:.2f}", f"{gate / copy:.2f}"])
    print(markdown_table(rows, ["block", "branch", "gate", "copy of the branch", "gate / copy"]),
          end="")


if __name__ == "__main__":
    main()
