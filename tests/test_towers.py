"""Multi-tower training proven on the CPU: `--towers 2 --gpus 0` runs tensorpack's replicated
multi-GPU trainer with both towers on the CPU (gradients summed there instead of by NCCL), so the
tower logic is tested for real: one shared ε reaching every tower, one copy of each variable in
the checkpoint, single-tower evaluation and compression of it, the batch split, resume."""
import json
import os

import numpy as np
import pytest
import yaml

from eps_resnet.cli import main
from eps_resnet.models import make_layout
from helpers import eps_resnet_cmd, uninterrupted_and_resumed

pytestmark = pytest.mark.slow

BLOCKS = [b.name for b in make_layout("cifar", 8).blocks]
ARGS = ["--dataset", "synthetic", "--depth", "8", "--variant", "epsilon", "--batch", "16",
        "--steps-per-epoch", "4", "--seed", "4", "--gpus", "0"]


def capture(names):
    """A tensorpack callback that fetches, at every step, the tensors of every tower whose name
    (without the tower's scope) is in ``names``: [(epoch, {op name: value})]."""
    from tensorpack.callbacks import Callback

    from eps_resnet.compat import import_tf

    tf = import_tf()

    class Capture(Callback):
        values = []

        def _setup_graph(self):
            ops = tf.get_default_graph().get_operations()
            self.tensors = {op.name: op.outputs[0] for op in ops if op.outputs and (
                op.name in names or (op.name.startswith("tower") and op.name.split("/", 1)[1] in names))}
            self.variables = [v.op.name for v in tf.global_variables() + tf.local_variables()]

        def _before_run(self, _):
            return tf.train.SessionRunArgs(fetches=self.tensors)

        def _after_run(self, _, run_values):
            self.values.append((self.epoch_num, run_values.results))

    return Capture()


def train(out, *args, callbacks=()):
    from eps_resnet.cli import train_settings
    from eps_resnet.training.train import train as run

    return run(train_settings([*ARGS, *args, "--out", str(out)]), extra_callbacks=list(callbacks))


@pytest.fixture(scope="module")
def two_towers(tmp_path_factory):
    """ε = 0 during epoch 1, then a huge ε: every gate of every tower closes in epoch 2."""
    out = tmp_path_factory.mktemp("towers") / "run"
    cb = capture({f"{b}/is_discarded" for b in BLOCKS})
    p = train(out, "--towers", "2", "--epsilon", "1e6", "--epsilon-start-epoch", "1", "--epochs", "2",
              callbacks=[cb])
    return out, cb, p


def test_epsilon_is_one_variable_and_reaches_every_tower(two_towers):
    out, cb, p = two_towers
    assert p.devices.towers == 2 and p.devices.trainer == "SyncMultiGPUTrainerReplicated"
    assert p.devices.all_reduce == "cpu" and p.devices.device == "cpu"
    assert [v for v in cb.variables if v.split("/")[-1] == "epsilon"] == ["epsilon"]
    towers = {name.split("/")[0] for _, step in cb.values for name in step}
    assert towers == {"tower0", "tower1"}
    for epoch, step in cb.values:
        assert len(step) == 2 * len(BLOCKS)  # each tower's gate of each block
        assert set(step.values()) == ({0.0} if epoch == 1 else {1.0}), (epoch, step)
    record = yaml.safe_load((out / "run.yaml").read_text())
    assert record["resolved"]["devices"]["towers"] == 2 and record["resolved"]["batch_per_tower"] == 8


def test_checkpoint_holds_one_copy_and_evaluates_on_one_tower(two_towers, tmp_path, capsys):
    from eps_resnet.training.runfolder import latest_checkpoint, read_checkpoint

    out, _, _ = two_towers
    names = list(read_checkpoint(latest_checkpoint(str(out))[0]))
    assert not [n for n in names if n.startswith("tower")]
    kernels = [n for n in names if n.endswith("/W") and n.startswith("res")]
    assert sorted(kernels) == sorted(f"{b}/conv{i}/W" for b in BLOCKS for i in (1, 2))
    stats = json.loads((out / "stats.json").read_text())
    assert main(["evaluate", str(out), "--out", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["val_error"] == pytest.approx(stats[-1]["val_error"], abs=1e-6)
    assert main(["compress", str(out), "--out", str(tmp_path / "small")]) == 0
    info = yaml.safe_load((tmp_path / "small" / "compressed.yaml").read_text())
    assert info["checks"]["val_error"]["full"] == pytest.approx(stats[-1]["val_error"], abs=1e-6)
    assert len(info["discarded"]) == len(BLOCKS)  # all closed in epoch 2


def test_a_batch_that_does_not_split_is_refused(tmp_path, capsys):
    assert main(["train", *ARGS, "--epsilon", "1", "--towers", "3", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--batch 16 is not divisible by --towers 3" in err and len(err.splitlines()) == 1
    assert main(["train", *ARGS[:-2], "--epsilon", "1", "--towers", "2", "--out", str(tmp_path / "r")]) == 2
    assert "--towers 2 is for training on the CPU (with --gpus 0)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_one_and_two_towers_start_from_the_same_network(tmp_path):
    """Same seed, same total batch (16): the variables are created and seeded the same way, so
    the first step's weight-decay cost is identical; each tower's cross-entropy is that of its
    half of the same 16 images (the same permutation gives tower 0 the first eight), and the
    forward pass differs only through batch-norm statistics (each tower normalises its own
    half): so tower 0's and tower 1's mean cross-entropy is close to the single tower's, not
    equal."""
    names = {"wd_cost", "cross_entropy_loss"}
    one, two = capture(names), capture(names)
    train(tmp_path / "one", "--epsilon", "1", "--epochs", "1", callbacks=[one])
    train(tmp_path / "two", "--epsilon", "1", "--epochs", "1", "--towers", "2", callbacks=[two])
    first1, first2 = one.values[0][1], two.values[0][1]
    assert first2["tower0/wd_cost"] == first1["wd_cost"] == first2["tower1/wd_cost"]
    halves = (first2["tower0/cross_entropy_loss"] + first2["tower1/cross_entropy_loss"]) / 2
    assert halves == pytest.approx(first1["cross_entropy_loss"], rel=0.1)


def test_killed_two_tower_run_resumes(tmp_path):
    args = eps_resnet_cmd("train", *ARGS, "--epsilon", "1", "--towers", "2", "--steps-per-epoch",
                          "20", "--epochs", "3")
    whole, resumed = uninterrupted_and_resumed(
        args, tmp_path, lambda run: (run / "model-20.index").exists())
    stats = json.loads((resumed / "stats.json").read_text())
    assert [s["epoch_num"] for s in stats] == [1, 2, 3]
    assert (whole / "stats.json").read_bytes() == (resumed / "stats.json").read_bytes()
    assert np.isfinite(stats[-1]["cost"]) and os.path.exists(resumed / "model-60.index")
