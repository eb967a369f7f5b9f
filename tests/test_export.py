"""`eps-resnet export`: any trained run as a SavedModel that plain TensorFlow uses on raw uint8
images, giving the logits the package computes on the normalised images."""
import os
import subprocess
import sys

import numpy as np
import pytest

from eps_resnet.cli import main

pytestmark = pytest.mark.slow

CLASSIFY = (
    "import sys, numpy as np, tensorflow as tf\n"
    "model = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
    "out = model(input=tf.constant(np.load(sys.argv[2])))\n"
    "np.save(sys.argv[3], out['logits'].numpy())\n"
    "print('eps_resnet' in sys.modules, out['prob'].numpy().argmax(1).tolist())\n")


@pytest.mark.parametrize("dataset", ["synthetic", "digits"])
def test_exported_baseline_classifies_raw_images(tmp_path, dataset, tf):
    from tensorpack.tfutils.sessinit import DictRestore

    from eps_resnet.models.resnet import build_model
    from eps_resnet.runs.evaluate import predictor
    from eps_resnet.runs.export import input_mean
    from eps_resnet.training.runfolder import latest_checkpoint, read_checkpoint, run_settings

    data = []
    if dataset == "digits":
        assert main(["prepare", "digits", "--out", str(tmp_path / "digits")]) == 0
        data = ["--data-dir", str(tmp_path / "digits")]
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset, *data, "--depth", "8", "--variant", "standard",
                 "--batch", "16", "--steps-per-epoch", "4", "--epochs", "1", "--out", str(run)]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "model")]) == 0

    settings = run_settings(str(run)).resolved()
    size = settings.image_size  # the training size: 16 for the demo's digits, 32 here otherwise
    x = (np.random.RandomState(1).rand(5, size, size, 3) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    r = subprocess.run([sys.executable, "-c", CLASSIFY, str(tmp_path / "model"), str(tmp_path / "x.npy"),
                        str(tmp_path / "logits.npy")], capture_output=True, text=True, timeout=300,
                       env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().startswith("False")  # plain TensorFlow, no eps_resnet
    served = np.load(tmp_path / "logits.npy")

    model = build_model(settings)
    # what the training dataflow feeds: digits as uint8 (the network subtracts the mean),
    # synthetic data centred
    assert model.takes_uint8 == (dataset == "digits")
    fed = x if model.takes_uint8 else x.astype(np.float32) - input_mean(settings)
    pred = predictor(model, DictRestore(read_checkpoint(latest_checkpoint(str(run))[0])), ["logits"])
    ours = pred(fed, np.zeros(5, np.int32))[0]
    assert np.abs(served - ours).max() < 1e-4 * max(1.0, np.abs(ours).max())
