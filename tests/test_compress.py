"""Compression of tiny ε-ResNets whose chosen blocks really were discarded in training."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from eps_resnet.cli import main
from eps_resnet.models.layouts import compress_layout, count_parameters, make_layout

pytestmark = pytest.mark.slow


def zero_branches(run, blocks, last_conv):
    """Zero the last convolution of the chosen blocks in the run's newest checkpoint: their
    branch output is then exactly 0, the gate closes on every batch, a closed gate passes no
    gradient, so training keeps them closed and their moving-average is_discarded rises to 1."""
    from eps_resnet.compat import import_tf
    from eps_resnet.training.runfolder import latest_checkpoint

    tf = import_tf()
    path, _ = latest_checkpoint(str(run))
    reader = tf.train.load_checkpoint(path)
    with tf.Graph().as_default():
        variables = []
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            # the kernel and its momentum (else the first update revives it)
            if any(name in (f"{b}/{last_conv}/W", f"{b}/{last_conv}/W/Momentum") for b in blocks):
                value = np.zeros_like(value)
            variables.append(tf.Variable(value, name=name))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver(variables).save(sess, path, write_meta_graph=False)


def train(out, args, epochs):
    rc = main(["train", "--dataset", "synthetic", "--variant", "epsilon", "--epsilon", "0.05",
               "--batch", "8", "--steps-per-epoch", "30", "--epochs", str(epochs), *args,
               "--out", str(out)])
    assert rc == 0


@pytest.fixture(scope="module", params=[
    ("cifar", ["--depth", "14"], ["res1.1", "res2.0"], "conv2"),
    ("imagenet", ["--depth", "18", "--family", "imagenet", "--image-size", "32", "--classes", "10"],
     ["res1.0", "res2.0"], "conv2"),
], ids=["cifar", "imagenet"])
def discarded_run(request, tmp_path_factory):
    family, args, blocks, last_conv = request.param
    out = tmp_path_factory.mktemp(family) / "run"
    train(out, args, 1)
    zero_branches(out, blocks, last_conv)
    train(out, args, 3)  # resumes: two more epochs with those gates closed
    return family, out, blocks


def test_compressed_structure_parameters_and_equivalence(discarded_run, tmp_path):
    family, run, blocks = discarded_run
    stats = json.load(open(run / "stats.json"))
    assert all(stats[-1][f"{b}/is_discarded"] > 0.9 for b in blocks)
    out = tmp_path / "compressed"
    assert main(["compress", str(run), "--out", str(out)]) == 0
    info = yaml.safe_load(open(out / "compressed.yaml"))
    assert info["discarded"] == blocks
    settings = info["settings"]
    full = make_layout(family, settings["depth"])
    small, mapping = compress_layout(full, blocks)
    structure = [b for g in info["structure"] for b in g]
    assert [b["name"] for b in structure] == [b.name for b in small.blocks]
    assert [b["from_block"] for b in structure] == [mapping[b.name] for b in small.blocks]
    first = structure[[b["from_block"] for b in structure].index("res2.0")]
    assert first["shortcut_only"] and first["stride"] == 2  # the group's downsampling survives
    assert blocks[0] not in [b["from_block"] for b in structure]  # an identity block is gone
    assert info["params"]["compressed"] == count_parameters(full, 10, False, blocks)
    assert info["params"]["compressed"] < info["params"]["full"]
    assert info["flops"]["compressed"] < info["flops"]["full"]
    checks = info["checks"]
    assert checks["agreement"] >= 0.999 and checks["max_logit_difference"] < 1e-4
    assert checks["equivalent"] is True and checks["validation_batches"] > 0
    assert checks["batches_gated_differently"] == 0  # the discarded gates closed on every batch
    for b in blocks:
        assert checks["discarded_blocks"][b]["gate_closed_on_validation"] == 1.0
        assert checks["discarded_blocks"][b]["branch_weight_norm"] < \
            checks["discarded_blocks"][b]["median_kept_branch_weight_norm"]

    # evaluate: full and compressed give the same validation error
    assert main(["evaluate", str(run), "--out", str(tmp_path / "full.json")]) == 0
    assert main(["evaluate", str(out)]) == 0
    full_eval = json.load(open(tmp_path / "full.json"))
    small_eval = json.load(open(out / "eval.json"))
    assert small_eval["kind"] == "compressed" and full_eval["images"] == small_eval["images"] == 512
    assert abs(full_eval["val_error"] - small_eval["val_error"]) <= 1 / 512

    # the SavedModel, in a fresh process with plain TensorFlow (no eps_resnet)
    x = (np.random.RandomState(0).rand(4, 32, 32, 3) * 255).astype(np.uint8)  # raw images
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "f = m.signatures['serving_default']\n"
        "x = np.load(sys.argv[2])\n"
        "out = f(input=tf.constant(x))\n"
        "np.save(sys.argv[3], out['logits'].numpy())\n"
        "print('eps_resnet' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    r = subprocess.run([sys.executable, "-c", code, str(out / "saved_model"), str(tmp_path / "x.npy"),
                        str(tmp_path / "logits.npy")], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "False"
    served = np.load(tmp_path / "logits.npy")
    assert served.shape == (4, 10) and np.isfinite(served).all()


def test_bad_inputs(tmp_path, capsys):
    run = tmp_path / "eps"
    # ε = 0: a gate closes only on an all-zero branch, so nothing is discarded
    assert main(["train", "--dataset", "synthetic", "--depth", "8", "--variant", "epsilon",
                 "--epsilon", "0", "--batch", "16", "--steps-per-epoch", "3", "--epochs", "1",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["compress", str(run), "--out", str(tmp_path / "same"), "--limit", "64"]) == 0
    assert "no block is discarded" in capsys.readouterr().out
    info = yaml.safe_load(open(tmp_path / "same" / "compressed.yaml"))
    assert info["nothing_discarded"] and info["params"]["full"] == info["params"]["compressed"]
    assert info["checks"]["agreement"] == 1.0
    assert info["checks"]["equivalent"] is True

    # stats.json says res1.0 was discarded but its gate is open (ε = 0) on every batch: the
    # compressed network is another one, and compress says so rather than pass silently
    stats = json.load(open(run / "stats.json"))
    stats[-1]["res1.0/is_discarded"] = 1.0
    (run / "stats.json").write_text(json.dumps(stats))
    capsys.readouterr()
    assert main(["compress", str(run), "--out", str(tmp_path / "other"), "--limit", "64"]) == 0
    checks = yaml.safe_load(open(tmp_path / "other" / "compressed.yaml"))["checks"]
    assert checks["batches_gated_differently"] == checks["validation_batches"] == 4
    assert checks["equivalent"] is (checks["agreement"] >= 0.999)
    err = capsys.readouterr().err
    assert ("is NOT equivalent" in err) is (not checks["equivalent"])
    assert main(["evaluate", str(tmp_path / "other"), "--limit", "16"]) == 0
    assert "gated 4 of 4 validation batches differently" in capsys.readouterr().out
    stats[-1]["res1.0/is_discarded"] = 0.0
    (run / "stats.json").write_text(json.dumps(stats))

    assert main(["compress", str(run), "--out", str(tmp_path / "orig"), "--limit", "32",
                 "--rule", "closed"]) == 0
    info = yaml.safe_load(open(tmp_path / "orig" / "compressed.yaml"))
    assert info["rule"] == "closed" and info["discarded_at"] > 0.99 and info["discarded"] == []
    capsys.readouterr()
    assert main(["compress", str(run), "--step", "7", "--out", str(tmp_path / "a")]) == 2
    assert "--step 7 has no checkpoint" in capsys.readouterr().err
    std = tmp_path / "std"
    assert main(["train", "--dataset", "synthetic", "--depth", "8", "--variant", "standard",
                 "--batch", "16", "--steps-per-epoch", "2", "--epochs", "1", "--out", str(std)]) == 0
    capsys.readouterr()
    assert main(["compress", str(std), "--out", str(tmp_path / "b")]) == 2
    assert "is a standard run, not an ε-ResNet" in capsys.readouterr().err
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(run, broken)
    for name in os.listdir(broken):
        if name.startswith("model-3.data"):
            (broken / name).write_bytes(b"garbage")
    assert main(["compress", str(broken), "--out", str(tmp_path / "c")]) == 2
    assert "no checkpoint reads back (model-3: it does not read back" in capsys.readouterr().err
