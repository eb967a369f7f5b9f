"""The bfloat16 check of tests/test_precision.py, in a process of its own: mixed-precision
training on a CPU with bfloat16 units runs oneDNN's native kernels, which a process decides before
TensorFlow starts (eps_resnet.compat.use_cpu_kernels), while the test process runs the portable
ones. Usage: python tests/bf16_training.py OUT_DIR (exits non-zero on a failed assertion)."""
import sys
from pathlib import Path

from eps_resnet.compat import use_cpu_kernels

use_cpu_kernels("native")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from eps_resnet.cli import main  # noqa: E402
from eps_resnet.compat import import_tf  # noqa: E402
from eps_resnet.training.settings import TrainSettings  # noqa: E402


def check(out: Path) -> None:
    tf = import_tf()
    assert main(["train", "--dataset", "synthetic", "--depth", "8", "--variant", "epsilon",
                 "--epsilon", "2.3", "--batch", "16", "--steps-per-epoch", "6", "--epochs", "1",
                 "--precision", "mixed", "--out", str(out)]) == 0
    record = yaml.safe_load((out / "run.yaml").read_text())
    assert record["settings"]["precision"] == "mixed"
    assert record["resolved"]["devices"]["mixed_kind"] == "onednn_bfloat16"
    stats = yaml.safe_load((out / "stats.json").read_text())
    assert np.isfinite(stats[-1]["cost"])

    # the graph TensorFlow runs after its rewrite (partition graphs of one training step)
    from tensorpack.tfutils.tower import TowerContext

    from eps_resnet.compat import session_config
    from eps_resnet.models.resnet import build_model

    model = build_model(TrainSettings(dataset="synthetic", depth=8, variant="epsilon", epsilon=2.3,
                                      out=str(out)).resolved(), mixed_kind="onednn_bfloat16")
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 32, 32, 3], "input")
        y = tf.placeholder(tf.int32, [None], "label")
        with TowerContext("", is_training=True):
            cost = model.build_graph(x, y)
        step = model.optimizer().minimize(cost)
        meta = tf.RunMetadata()
        with tf.Session(config=session_config(0, "onednn_bfloat16")) as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(step, {x: np.random.RandomState(0).rand(8, 32, 32, 3).astype(np.float32) * 60,
                            y: np.zeros(8, np.int32)},
                     options=tf.RunOptions(output_partition_graphs=True), run_metadata=meta)
    nodes = {n.name: n for g in meta.partition_graphs for n in g.node}
    bf16, f32 = tf.bfloat16.as_datatype_enum, tf.float32.as_datatype_enum
    # (oneDNN renames the kernels it runs, e.g. _MklNativeConv2D)
    assert sum(1 for n in nodes.values() if "Conv2D" in n.op and n.attr["T"].type == bf16) >= 10
    for block in ("res1.0", "res2.0", "res3.0"):
        gate = {n.split("/gate/")[1]: nodes[n] for n in nodes if n.startswith(f"{block}/gate/")}
        # |F|, its maxima per image and channel (oneDNN's pooling) and their max read the
        # branch as computed: no full-size cast
        pool = next(v for k, v in gate.items() if "MaxPool" in v.op)
        for node in (gate["Abs"], pool, gate["Max"]):
            assert node.attr["T"].type == bf16, (block, node.name)
        assert "Conv2D" in nodes[gate["Abs"].input[0].split(":")[0]].op
        assert pool.input[0].split(":")[0] == f"{block}/gate/Abs"
        assert gate["Max"].input[0].split(":")[0] == pool.name
        for op in ("sub", "Relu", "mul", "add", "Relu_1", "mul_1", "add_1"):  # ε's arithmetic
            assert gate[op].attr["T"].type == f32, (block, op)
        assert gate["sub/ReadVariableOp"].op == "ReadVariableOp"  # ε read as float32, never cast
        assert not any("CastToBf16" in n for n in gate["sub"].input)

    # the pooled max|F| (oneDNN's bfloat16 max pooling) decides as the float32 formula does
    from helpers import gate_decisions_match_the_float32_formula

    for eps in (2.3, 2.5, 1.8, 0.1, 7.7):
        assert gate_decisions_match_the_float32_formula(tf, eps, pooled=True) >= 14



if __name__ == "__main__":
    check(Path(sys.argv[1]))
    print("bfloat16 where it should be, float32 in the gate")
