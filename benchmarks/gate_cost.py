#!/usr/bin/env python
"""What the gate's decision costs in a training step, by how much of the branch it reads: the
ε-ResNet's step with the paper's gate and with probe gates whose decision reads less, against
the same network without gates (variant ``side``: the side output, no gate) and the standard
one, single steps alternated in one process, ratios as medians of the alternated pairs.

The probes are added through the gate registry (``models.gate.register_gate``), as a new gate
would be. They compute the block's output as the paper's gate does (``tf.case`` on T, the ε
arithmetic) but take T from:

* ``max F, min F``: max|F| by TensorFlow's two reductions, the paper's gate where its CPU
  kernel (``models/peak_op.cc``) is not built: the same decisions as the paper's gate;
* ``read one value``: one element of the branch (the selection and the arithmetic, no reading);
* ``max F, first eighth``: max F over the batch's first eighth;
* ``max F``: max F over the whole branch (one of the paper's gate's two reductions);

so the decisions of the last three are not the paper's: for timing only. fp32 runs the native
CPU kernels unless ``--cpu-kernels portable``; mixed, oneDNN's bfloat16 rewrite (a CPU with
bfloat16 only).

    python benchmarks/gate_cost.py                       # ResNet-32, batch 128, fp32
    python benchmarks/gate_cost.py --precision mixed
    python benchmarks/gate_cost.py --units 1 --batch 8 --steps 4
"""
from __future__ import annotations

import argparse
import statistics

from eps_resnet.models import DEFAULT_GATE
from eps_resnet.models.gate import peak_by_reductions
from eps_resnet.tables import markdown_table
from step_profile import alternated, network_arguments, start_tensorflow, training_step

#: probe name: how its peak is read from the branch F (stop-gradient'ed)
PROBES = {
    "max F, min F": lambda tf, f: peak_by_reductions(f),
    "read one value": lambda tf, f: f[0, 0, 0, 0],
    "max F, first eighth": lambda tf, f: tf.reduce_max(f[:max(1, f.shape[0] // 8)]),
    "max F": lambda tf, f: tf.reduce_max(f),
}


def register_probes(tf) -> None:
    """Register every probe of PROBES as a gate of that name."""
    from eps_resnet.models.gate import float32_fence, gate_step, register_gate, select_output

    def probe(read):
        def gate(shortcut, branch, epsilon, **_):
            with tf.name_scope("gate"):
                peak = float32_fence(read(tf, tf.stop_gradient(branch)), name="peak")
                t = gate_step(peak, epsilon)
            return select_output(shortcut, branch, t, t), tf.subtract(1.0, t, name="is_discarded")
        return gate

    for name, read in PROBES.items():
        register_gate(name)(probe(read))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    network_arguments(p, steps=50)
    args = p.parse_args()
    tf, info = start_tensorflow(args, "gate_cost.py")
    register_probes(tf)
    networks = {"standard": ("standard", DEFAULT_GATE), "side (no gate)": ("side", DEFAULT_GATE),
                "the paper's gate": ("epsilon", DEFAULT_GATE),
                **{f"probe: {name}": ("epsilon", name) for name in PROBES}}
    runs = {k: training_step(tf, v, args.units, args.batch, args.precision == "mixed", gate)
            for k, (v, gate) in networks.items()}
    times = alternated(runs, args.steps)

    print(f"\nResNet-{6 * args.units + 2}, batch {args.batch}, {args.precision}, CPU "
          f"({len(runs)} networks alternated step by step, {args.steps} steps each) "
          f"{info['model']} [{' '.join(info['flags'])}]")
    pair = {k: statistics.median(s / t for s, t in zip(times["standard"], times[k]))
            for k in runs}
    side = {k: statistics.median(s / t for s, t in zip(times["side (no gate)"], times[k]))
            for k in runs}
    print(markdown_table([[k, f"{statistics.median(times[k]) * 1000:.1f}", f"{pair[k]:.3f}",
                           f"{side[k]:.3f}"] for k in runs],
                         ["network", "ms/step (median)", "standard / network (pairs)",
                          "side / network (pairs)"]), end="")


if __name__ == "__main__":
    main()
