#!/usr/bin/env python
"""The training loop's own cost: the real training path against a bare session.run loop.

On a GPU a CIFAR step lasts milliseconds, so what the loop adds per step (tensorpack's callbacks
and monitors, the ordered input queue, the gate's bookkeeping, summaries) bounds the speed.
Measured here on a network small enough for that cost to show (default: CIFAR-family depth 8,
batch 8), in one process, alternating:

* full: `eps_resnet.training.train.train`, a run as `eps-resnet train` makes it (trainer, every
  callback and monitor, OrderedQueueInput fed by the synthetic dataflow), median step;
* bare: the same model's graph and optimizer, its batch-norm updates, and nothing else: the
  run's first batches held in the graph, taken in turn, ``session.run(train_op)`` in a loop.

Prints steps/s of both, their ratio and the overhead in milliseconds per step, and names the CPU.

    python benchmarks/loop_overhead.py [--depth 8] [--batch 8] [--variant epsilon]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import eps_resnet  # noqa: F401  (the TensorFlow switches, before TensorFlow)


def settings_for(args, out: str):
    from eps_resnet.training.settings import TrainSettings

    return TrainSettings(dataset="synthetic", depth=args.depth, variant=args.variant,
                         epsilon=2.5 if args.variant == "epsilon" else None, epochs=1,
                         steps_per_epoch=args.warmup + args.steps, batch=args.batch, gpus=0,
                         threads=args.threads, out=out)


def full_path(args) -> float:
    """Steps/s of the real training path (median step after the warm-up)."""
    from eps_resnet.training.throughput import median_step

    return 1 / median_step(settings_for(args, "unused"), args.warmup)


def bare_loop(args) -> float:
    """Steps/s of session.run(train_op) alone on the same graph and batches."""
    import numpy as np
    from tensorpack.tfutils.tower import TowerContext

    from eps_resnet.compat import import_tf, session_config
    from eps_resnet.data.dataflows import get_dataflow
    from eps_resnet.models.resnet import build_model

    tf = import_tf()
    s = settings_for(args, os.path.join(tempfile.gettempdir(), "unused")).resolved()
    flow = get_dataflow(s, "train", s.batch)
    flow.reset_state()
    batches = [b for _, b in zip(range(8), flow)]
    with tf.Graph().as_default():
        tf.set_random_seed(s.seed)
        images = tf.constant(np.stack([b[0] for b in batches]))
        labels = tf.constant(np.stack([b[1] for b in batches]))
        step = tf.train.get_or_create_global_step()
        k = tf.math.floormod(step, len(batches))
        model = build_model(s)
        with TowerContext("", is_training=True):
            cost = model.build_graph(tf.gather(images, k), tf.gather(labels, k))
        optimizer = model.get_optimizer()
        with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
            train_op = optimizer.minimize(cost, global_step=step)
        with tf.Session(config=session_config(s.threads)) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(args.warmup):
                sess.run(train_op)
            gaps = []
            for _ in range(args.steps):
                start = time.perf_counter()
                sess.run(train_op)
                gaps.append(time.perf_counter() - start)
    return 1 / statistics.median(gaps)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=8, help="CIFAR-family depth (default 8)")
    p.add_argument("--batch", type=int, default=8, help="default 8")
    p.add_argument("--variant", default="epsilon", help="standard, side or epsilon (default)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per round (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="default 20")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (default 0: all)")
    args = p.parse_args(argv)

    from eps_resnet.tables import markdown_table
    from eps_resnet.training.provenance import cpu

    full, bare = [], []
    for r in range(args.rounds):
        full.append(full_path(args))
        bare.append(bare_loop(args))
        print(f"round {r + 1}: full {full[-1]:.1f} steps/s, bare {bare[-1]:.1f} steps/s",
              file=sys.stderr)
    f, b = statistics.median(full), statistics.median(bare)
    print(f"\nTraining loop overhead: CIFAR-family depth {args.depth}, {args.variant}, batch "
          f"{args.batch}, synthetic data, CPU ({cpu()['model']}, {os.cpu_count()} cores), median "
          f"of {args.rounds} alternating round(s) of {args.steps} steps")
    print(markdown_table([["full (trainer, callbacks, monitors, ordered input)", f"{f:.1f}",
                           f"{1000 / f:.2f}"],
                          ["bare session.run(train_op)", f"{b:.1f}", f"{1000 / b:.2f}"]],
                         ["path", "steps/s", "ms/step"]), end="")
    print(f"\nfull / bare: {f / b:.3f}; overhead {1000 / f - 1000 / b:.2f} ms per step")


if __name__ == "__main__":
    main()
