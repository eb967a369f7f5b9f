"""Whether this CPU computes the portable kernels' reference bits, op by op.

A fixed set of single TensorFlow ops, each one that an ε-ResNet training step runs (convolutions
and both their gradients, batch norm in training and inference and its gradient, the fully
connected layer's products, pooling, the gate's reductions, the loss), at the demo's and CIFAR's
shapes and on the ImageNet family's smallest maps, on inputs that every machine builds bit for
bit (integers scaled by powers of two), under the portable kernels and one thread. Each output's
SHA-256 is compared with ``eps_resnet/reference/cpu_bits.json``, written on the machine that
wrote tests/golden and docs/demo/summary.md: equal hashes mean that this CPU computes the numbers
the README reports; a differing op is where a portable run here would leave them.

    python -m eps_resnet.workflow.cpubits            # compare, one line (exit 1 if any differ)
    python -m eps_resnet.workflow.cpubits --write    # write the reference anew (with tests/golden)
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "reference", "cpu_bits.json")
#: (batch, map side, channels in, out, kernel, stride): the digits demo's CIFAR-family ResNet-14
#: (batch 64, 16 x 16), CIFAR's first stage, and the ImageNet-family ResNet-18's last maps
CONVOLUTIONS = ((64, 16, 3, 16, 3, 1), (64, 16, 16, 16, 3, 1), (64, 16, 16, 32, 3, 2),
                (64, 8, 32, 64, 3, 2), (64, 4, 64, 64, 3, 1), (128, 32, 16, 16, 3, 1),
                (32, 2, 256, 512, 3, 2), (32, 1, 512, 512, 3, 1), (32, 4, 128, 256, 1, 2))


def _inputs(shape, seed: int):
    """float32 values every machine makes alike: integers in [-2^12, 2^12) over 2^10."""
    import numpy as np

    rng = np.random.RandomState(seed)
    return (rng.randint(-1 << 12, 1 << 12, shape).astype(np.float32) / 1024).astype(np.float32)


def _convolutions(tf):
    out = []
    for i, (b, side, cin, cout, k, stride) in enumerate(CONVOLUTIONS):
        x = tf.constant(_inputs((b, side, side, cin), 10 + i))
        w = tf.constant(_inputs((k, k, cin, cout), 20 + i) / (k * k * cin))
        y = tf.nn.conv2d(x, w, [1, stride, stride, 1], "SAME")
        dx, dw = tf.gradients(y, [x, w], grad_ys=tf.constant(_inputs(y.shape.as_list(), 30 + i)))
        name = f"conv {b}x{side}x{side}x{cin}->{cout} k{k}s{stride}"
        out += [(f"{name} forward", y), (f"{name} input gradient", dx),
                (f"{name} filter gradient", dw)]
    return out


def _batch_norm(tf):
    x, gamma = tf.constant(_inputs((64, 8, 8, 32), 40)), tf.constant(_inputs((32,), 41))
    beta = tf.constant(_inputs((32,), 42))
    y, mean, var, *_ = tf.raw_ops.FusedBatchNormV3(x=x, scale=gamma, offset=beta, mean=[],
                                                   variance=[], epsilon=1e-3, is_training=True)
    dx, dgamma, dbeta = tf.gradients(y, [x, gamma, beta],
                                     grad_ys=tf.constant(_inputs((64, 8, 8, 32), 43)))
    inference = tf.raw_ops.FusedBatchNormV3(x=x, scale=gamma, offset=beta, mean=mean,
                                            variance=tf.abs(var) + 0.5, epsilon=1e-3,
                                            is_training=False)[0]
    return [("batch norm", y), ("batch norm mean", mean), ("batch norm variance", var),
            ("batch norm input gradient", dx), ("batch norm gamma gradient", dgamma),
            ("batch norm beta gradient", dbeta), ("batch norm inference", inference)]


def _the_rest(tf):
    x = tf.constant(_inputs((64, 8, 8, 64), 50))
    features, w = tf.constant(_inputs((64, 64), 51)), tf.constant(_inputs((64, 10), 52) / 8)
    logits = tf.matmul(features, w)
    labels = tf.constant([i % 10 for i in range(64)])
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    dfeatures, dw = tf.gradients(tf.reduce_mean(xent), [features, w])
    avg = tf.nn.avg_pool2d(x, 2, 2, "SAME")
    big = tf.nn.max_pool2d(x, 3, 2, "SAME")
    grads = tf.gradients([avg, big], [x], grad_ys=[tf.constant(_inputs(avg.shape.as_list(), 53)),
                                                   tf.constant(_inputs(big.shape.as_list(), 54))])
    return [("fully connected", logits), ("cross entropy", xent),
            ("fully connected input gradient", dfeatures), ("fully connected weight gradient", dw),
            ("average and max pooling", tf.concat([tf.reshape(avg, [-1]), tf.reshape(big, [-1])], 0)),
            ("pooling gradients", grads[0]), ("relu", tf.nn.relu(x)),
            ("gate reductions", tf.stack([tf.reduce_max(x), tf.reduce_min(x),
                                          tf.reduce_max(tf.abs(x))])),
            ("global average pooling", tf.reduce_mean(x, [1, 2])), ("l2 loss", tf.nn.l2_loss(x))]


def hashes() -> dict[str, str]:
    """Every op's output hash, computed in this process (which must run portable kernels)."""
    from ..compat import cpu_kernels, import_tf, session_config

    if cpu_kernels()["kind"] != "portable":
        raise RuntimeError("the reference bits are the portable kernels': run with "
                           "EPS_RESNET_CPU_KERNELS=portable")
    tf = import_tf()
    with tf.Graph().as_default(), tf.Session(config=session_config(1)) as sess:
        named = _convolutions(tf) + _batch_norm(tf) + _the_rest(tf)
        values = sess.run([t for _, t in named])
    return {name: hashlib.sha256(value.tobytes()).hexdigest()[:16]
            for (name, _), value in zip(named, values)}


def hashes_in_own_process() -> dict[str, str]:
    """:func:`hashes` in a fresh Python process with portable kernels (a process decides its
    kernels before TensorFlow starts)."""
    env = {**os.environ, "EPS_RESNET_CPU_KERNELS": "portable"}
    done = subprocess.run([sys.executable, "-m", "eps_resnet.workflow.cpubits", "--json"], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the op hashes failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout)


def verdict(mine: dict[str, str], reference: dict[str, str]) -> tuple[bool, str]:
    """(same, one line): whether ``mine`` are the reference bits, or which ops differ."""
    differ = [name for name in reference if mine.get(name) != reference[name]]
    if not differ:
        return True, (f"this CPU computes the portable kernels' reference bits ({len(reference)} "
                      "ops): portable runs here give the README's numbers (tests/golden, "
                      "docs/demo/summary.md) bit for bit")
    return False, (f"{len(differ)} of {len(reference)} ops compute other bits than the reference "
                   f"({', '.join(differ[:4])}{', ...' if len(differ) > 4 else ''}): portable runs "
                   "here will not give the README's numbers bit for bit (tests/golden, "
                   "docs/demo/summary.md); `eps-resnet compare --tolerance` checks them closely")


def load_reference(path: str = REFERENCE) -> dict[str, str]:
    with open(path) as f:
        return json.load(f)["hashes"]


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="write the reference from this CPU")
    p.add_argument("--json", action="store_true", help="print this CPU's hashes as JSON")
    a = p.parse_args(argv)
    mine = hashes_in_own_process() if not a.json else hashes()
    if a.json:
        print(json.dumps(mine))
        return 0
    if a.write:
        from ..training.provenance import cpu

        with open(REFERENCE, "w") as f:
            json.dump({"cpu": cpu(), "hashes": mine}, f, indent=1)
            f.write("\n")
        print(f"{REFERENCE}: {len(mine)} ops")
        return 0
    same, line = verdict(mine, load_reference())
    print(line)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
