#!/usr/bin/env python
"""TensorFlow's two CPU kernels for a convolution's input gradient (Conv2DBackpropInput), with
oneDNN's rewrites off (native kernels where TensorFlow leaves them off, as on AMD CPUs; this
script switches them off on any CPU): the "custom" one, TensorFlow's default, against
Eigen's ("eigen_tensor"), which training uses on maps of at most 2x2 pixels
(eps_resnet.training.kernels).

Part 1 times the op alone on the layer shapes of both network families; part 2 times training
steps of a whole network through the real training path, with the small-map choice and without
it. Both alternate the two kernels within one process; the best round counts.

    python benchmarks/input_gradient_kernels.py       # ImageNet-family ResNet-18 on 16x16 images
    python benchmarks/input_gradient_kernels.py --depth 18 --image-size 16 --batch 32 --steps 10
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# the kernels measured here are TensorFlow's own: oneDNN's rewrites would replace them (before
# eps_resnet reads the user's values)
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

#: batch, map side, input channels, output channels, filter side, stride
SHAPES = [
    (128, 32, 16, 16, 3, 1), (128, 32, 16, 32, 3, 2), (128, 16, 32, 32, 3, 1),
    (128, 8, 64, 64, 3, 1), (64, 16, 16, 16, 3, 1), (64, 8, 32, 32, 3, 1), (64, 4, 64, 64, 3, 1),
    (32, 4, 64, 64, 3, 1), (32, 2, 128, 128, 3, 1), (32, 2, 128, 256, 3, 2),
    (32, 2, 128, 256, 1, 2), (32, 1, 256, 256, 3, 1), (32, 1, 256, 512, 3, 2),
    (32, 1, 512, 512, 3, 1),
]


def time_op(shapes, rounds: int, repeat: int) -> dict:
    """Best time in ms of each shape's input gradient (with the forward convolution that feeds
    it), per kernel: "custom" (TensorFlow's default) and "eigen"."""
    import numpy as np

    from eps_resnet.compat import import_tf
    from eps_resnet.training.kernels import EIGEN_LABEL, set_kernel_label

    tf = import_tf()
    best: dict = {}
    rng = np.random.RandomState(0)
    for _ in range(rounds):
        for shape in shapes:
            b, hw, ci, co, k, stride = shape
            # variables, not constants: grappler would fold a constant's gradient away
            x0, w0 = rng.rand(b, hw, hw, ci).astype("f4"), rng.rand(k, k, ci, co).astype("f4")
            for label in (None, EIGEN_LABEL):
                # a graph and session per shape: a session's steps slow down with the size of
                # its graph, which would blur the small shapes
                g = tf.Graph()
                with g.as_default():
                    x, w = tf.Variable(x0), tf.Variable(w0 * 0.01)
                    y = tf.nn.conv2d(x, w, stride, "SAME")
                    grad = tf.gradients(tf.reduce_sum(y * y), [x])[0]
                    if label:
                        set_kernel_label(grad.op, label)
                    config = tf.ConfigProto(intra_op_parallelism_threads=1,
                                            inter_op_parallelism_threads=1)
                    with tf.Session(config=config) as sess:
                        sess.run(tf.global_variables_initializer())
                        sess.run(grad.op)
                        start = time.perf_counter()
                        for _ in range(repeat):
                            sess.run(grad.op)
                        ms = (time.perf_counter() - start) / repeat * 1000
                key = (shape, "eigen" if label else "custom")
                best[key] = min(best.get(key, float("inf")), ms)
    return best


def time_network(args) -> dict:
    """Best img/s of training steps with the small-map choice ("eigen on small maps") and
    without it ("custom everywhere")."""
    from eps_resnet.training import kernels
    from eps_resnet.training.throughput import images_per_second

    pixels = kernels.SMALL_MAP_PIXELS
    best: dict = {}
    for _ in range(args.rounds):
        for name, limit in (("custom everywhere", 0), ("eigen on small maps", pixels)):
            kernels.SMALL_MAP_PIXELS = limit
            ips = images_per_second("standard", args.depth, args.batch, args.steps, args.warmup,
                                    gpus=0, family=args.family, image_size=args.image_size,
                                    cpu_kernels="native")
            best[name] = max(best.get(name, 0.0), ips)
            print(f"  {name:<20s} {ips:8.1f} img/s", file=sys.stderr)
    kernels.SMALL_MAP_PIXELS = pixels
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="imagenet", choices=["cifar", "imagenet"])
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="runs of each op per round")
    p.add_argument("--max-shapes", type=int, default=len(SHAPES), help=argparse.SUPPRESS)
    args = p.parse_args()

    from eps_resnet.compat import cpu_kernels, use_cpu_kernels

    use_cpu_kernels("native")
    from eps_resnet.training.kernels import onednn_rewrites_on
    from eps_resnet.tables import markdown_table
    from eps_resnet.training.provenance import cpu

    if onednn_rewrites_on():
        sys.exit("input_gradient_kernels.py: oneDNN's rewrites are on; nothing to compare")
    shapes = SHAPES[:args.max_shapes]
    ops = time_op(shapes, args.rounds, args.repeat)
    net = time_network(args)

    info = cpu()
    print(f"\nConv2DBackpropInput on the CPU ({os.cpu_count()} cores) {info['model']} "
          f"[{' '.join(info['flags'])}], {cpu_kernels()['kind']} kernels, 1 thread; best of "
          f"{args.rounds} round(s) of {args.repeat}")
    rows = []
    for shape in shapes:
        b, hw, ci, co, k, stride = shape
        custom, eigen = ops[(shape, "custom")], ops[(shape, "eigen")]
        rows.append([b, f"{hw}x{hw}", f"{ci} -> {co}", f"{k}x{k}, {stride}", f"{custom:.1f}",
                     f"{eigen:.1f}", f"{custom / eigen:.2f}"])
    print(markdown_table(rows, ["batch", "input map", "channels in -> out", "filter, stride",
                                "custom ms", "eigen ms", "custom / eigen"]), end="")
    print(f"\nTraining steps, {args.family}-family ResNet-{args.depth} standard, "
          f"{args.image_size}x{args.image_size} synthetic images, batch {args.batch}, "
          f"median of {args.steps} steps after {args.warmup}")
    a, b = net["custom everywhere"], net["eigen on small maps"]
    print(markdown_table([[f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}"]],
                         ["custom everywhere img/s", "eigen on small maps img/s", "speed-up"]),
          end="")


if __name__ == "__main__":
    main()
