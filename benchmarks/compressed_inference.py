#!/usr/bin/env python
"""Inference speed of a full ε-ResNet and of the compressed network it found.

Builds CIFAR ResNet-110 (n = 18) and its compressed form without a chosen set of blocks (default:
12 of 54, the paper's ratio of about 0.22, more of them near the output as the paper observed),
in inference mode on this machine (NHWC on CPU, NCHW on GPU), and prints images/second at
batch 128 (median of timed batches after warm-up), the speedup, and the FLOP ratio it should
approach. Target: speedup >= 0.9 x (full FLOPs / compressed FLOPs).

    python benchmarks/compressed_inference.py [--discard res2.14 res3.3 ...] [--batches 20]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import eps_resnet  # noqa: F401
from eps_resnet.compat import import_tf, visible_gpus
from eps_resnet.models.layouts import compress_layout, count_flops, make_layout
from eps_resnet.tables import markdown_table
from eps_resnet.training.recipe import RECIPES

DEFAULT_DISCARD = [f"res2.{i}" for i in (11, 13, 15, 17)] + [f"res3.{i}" for i in range(10, 18)]


def images_per_second(layout, batch, batches, warmup, data_format):
    tf = import_tf()
    from tensorpack.tfutils.tower import TowerContext

    from eps_resnet.models.resnet import ModelSpec, ResNetModel

    model = ResNetModel(ModelSpec(layout, "epsilon", 10, 32, RECIPES["cifar"], epsilon=2.5,
                                  data_format=data_format))
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 32, 32, 3], "input")
        y = tf.placeholder(tf.int32, [None], "label")
        with TowerContext("", is_training=False):
            model.build_graph(x, y)
        logits = tf.get_default_graph().get_tensor_by_name("logits:0")
        config = tf.ConfigProto(intra_op_parallelism_threads=0, inter_op_parallelism_threads=0)
        with tf.Session(config=config) as sess:
            sess.run(tf.global_variables_initializer())
            feed = {x: np.random.RandomState(0).normal(0, 60, (batch, 32, 32, 3)).astype(np.float32),
                    y: np.zeros(batch, np.int32)}
            for _ in range(warmup):
                sess.run(logits, feed)
            times = []
            for _ in range(batches):
                start = time.perf_counter()
                sess.run(logits, feed)
                times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=110)
    p.add_argument("--discard", nargs="+", default=DEFAULT_DISCARD, metavar="BLOCK")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    fmt = "NCHW" if visible_gpus() else "NHWC"
    full = make_layout("cifar", args.depth)
    small, _ = compress_layout(full, args.discard)
    flop_ratio = count_flops(full, 32, 10) / count_flops(small, 32, 10)
    rates = {}
    for name, layout in (("full", full), ("compressed", small), ("full", full), ("compressed", small)):
        rates.setdefault(name, []).append(images_per_second(layout, args.batch, args.batches,
                                                            args.warmup, fmt))
    full_ips, small_ips = max(rates["full"]), max(rates["compressed"])
    speedup = small_ips / full_ips
    from eps_resnet.training.provenance import cpu

    print(f"\nInference, CIFAR ResNet-{args.depth}, batch {args.batch}, {fmt}, {cpu()['model']}, "
          f"{len(args.discard)} of {len(full.blocks)} blocks discarded "
          f"(ratio {len(args.discard) / len(full.blocks):.2f})")
    print(markdown_table([["full", f"{full_ips:.1f}", f"{count_flops(full, 32, 10) / 1e9:.3f}"],
                          ["compressed", f"{small_ips:.1f}", f"{count_flops(small, 32, 10) / 1e9:.3f}"]],
                         ["network", "img/s", "GFLOPs/img"]), end="")
    print(f"speedup {speedup:.3f}; FLOP ratio {flop_ratio:.3f}; target >= {0.9 * flop_ratio:.3f} "
          f"({'met' if speedup >= 0.9 * flop_ratio else 'NOT met'})")


if __name__ == "__main__":
    main()
