"""End-to-end training on synthetic data: metrics, run folder, resume, no-op rerun, bad input."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from helpers import eps_resnet_cmd
from eps_resnet.cli import main as cli_main
from eps_resnet.compat import has_nvidia_driver
from eps_resnet.models import make_layout


def main(argv):
    return cli_main(["train", *argv])


TINY = ["--dataset", "synthetic", "--depth", "8", "--batch", "16", "--steps-per-epoch", "6"]


def read_stats(run):
    with open(os.path.join(run, "stats.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def epsilon_run(tmp_path_factory):
    """A tiny ε-ResNet run with 20 classes (so top-5 metrics exist), 2 epochs."""
    out = tmp_path_factory.mktemp("runs") / "eps"
    rc = main([*TINY, "--classes", "20", "--variant", "epsilon", "--epsilon", "2.5",
               "--epochs", "2", "--out", str(out)])
    assert rc == 0
    return str(out)


@pytest.mark.slow
def test_stats_hold_every_metric_every_epoch(epsilon_run):
    stats = read_stats(epsilon_run)
    epochs = [s for s in stats if "val_error" in s]
    assert [s["epoch_num"] for s in epochs] == [1, 2]
    blocks = [b.name for b in make_layout("cifar", 8).blocks]
    wanted = ["train_error", "train_error_top5", "val_error", "val_error_top5",
              "side_output/val_error", "side_output/val_error_top5", "side_output/train_error",
              "cost", "cross_entropy_loss", "wd_cost", "learning_rate", "epsilon",
              "discarded_cnt", "discarded_ratio"] + [f"{b}/is_discarded" for b in blocks]
    # the gate at validation beside training's: share of batches closed, and max|F|
    wanted += [f"{b}/{m}" for b in blocks for m in ("val_is_discarded", "gate/peak", "gate/val_peak")]
    for s in epochs:
        missing = [m for m in wanted if m not in s]
        assert not missing, f"epoch {s['epoch_num']} lacks {missing}"
        assert s["epsilon"] == pytest.approx(2.5) and s["learning_rate"] == pytest.approx(0.1)
        assert 0 <= s["discarded_ratio"] <= 1
        assert s["discarded_cnt"] == pytest.approx(sum(s[f"{b}/is_discarded"] for b in blocks),
                                                   abs=1e-4)
        for b in blocks:
            assert 0 <= s[f"{b}/val_is_discarded"] <= 1
            assert s[f"{b}/gate/val_peak"] > 0 and s[f"{b}/gate/peak"] > 0
    assert epochs[-1]["global_step"] == 12


@pytest.mark.slow
def test_run_folder_contents(epsilon_run):
    from eps_resnet.compat import import_tf

    tf = import_tf()
    names = os.listdir(epsilon_run)
    assert {"log.log", "stats.json", "run.yaml", "checkpoint"} <= set(names)
    assert "model-12.index" in names and "model-6.index" in names
    events = [n for n in names if n.startswith("events.out.tfevents")]
    assert events
    tags = set()
    for e in tf.train.summary_iterator(os.path.join(epsilon_run, events[0])):
        tags.update(v.tag for v in e.summary.value)
    assert {"val_error", "discarded_cnt", "res3.0/is_discarded", "learning_rate"} <= tags
    with open(os.path.join(epsilon_run, "run.yaml")) as f:
        run = yaml.safe_load(f)
    assert run["status"] == "finished"
    assert run["settings"]["epsilon"] == 2.5 and run["settings"]["variant"] == "epsilon"
    assert run["resolved"]["data_format"] == "NHWC" and run["resolved"]["gated_blocks"] == 3
    assert run["environment"]["tensorflow"].startswith("2.21")
    assert "git_commit" in run["environment"]


@pytest.mark.slow
def test_finished_run_is_a_noop(epsilon_run, capsys):
    before = os.path.getmtime(os.path.join(epsilon_run, "stats.json"))
    rc = main([*TINY, "--classes", "20", "--variant", "epsilon", "--epsilon", "2.5",
               "--epochs", "2", "--out", epsilon_run])
    assert rc == 0
    assert "already finished" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(epsilon_run, "stats.json")) == before


@pytest.mark.slow
def test_killed_run_resumes_at_the_next_epoch(tmp_path):
    out = tmp_path / "resume"
    args = eps_resnet_cmd("train", *TINY, "--steps-per-epoch", "40", "--variant", "side", "--epochs", "3",
                          "--out", out)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (out / "model-40.index").exists():
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert (out / "model-40.index").exists() and not (out / "model-120.index").exists()
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    if not has_nvidia_driver():  # CI's machines: a CPU-only run prints no CUDA or GPU-option noise
        noise = re.findall(r".*(?:cuInit|cudart_stub|InitializeLog|GPU options|custom session config).*",
                           done.stderr)
        assert not noise
    stats = read_stats(out)
    epochs = [s["epoch_num"] for s in stats if "val_error" in s]
    assert epochs == [1, 2, 3]  # each epoch once: epoch 1 kept, 2 and 3 trained after resume
    assert [s["global_step"] for s in stats if "val_error" in s][-1] == 120
    log = (out / "log.log").read_text()
    assert "Resuming from" in log and "at epoch 2 of 3" in log


@pytest.mark.parametrize("args,message", [
    (["--dataset", "mnist", "--depth", "8", "--variant", "standard"], "--dataset 'mnist' is unknown"),
    (["--dataset", "synthetic", "--depth", "8", "--variant", "wide"], "--variant 'wide' is unknown"),
    (["--dataset", "imagenet", "--depth", "110", "--variant", "standard"],
     "--depth 110 is not an ImageNet-family depth"),
    (["--dataset", "cifar10", "--depth", "100", "--variant", "standard"],
     "--depth 100 is not a CIFAR-family depth"),
    (["--dataset", "synthetic", "--depth", "8", "--variant", "epsilon"], "--epsilon is required"),
    (["--dataset", "synthetic", "--depth", "8", "--variant", "epsilon", "--epsilon", "-1"],
     "--epsilon -1.0 is negative"),
    (["--dataset", "synthetic", "--depth", "8", "--variant", "standard", "--gpus", "2",
      "--batch", "7"], "--batch 7 is not divisible by --gpus 2"),
    (["--dataset", "synthetic", "--depth", "8", "--variant", "standard", "--gpus", "64"],
     "--gpus 64 asks for more GPUs than"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_output_folder_of_another_configuration_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    settings = {"dataset": "synthetic", "depth": 8, "variant": "epsilon", "epsilon": 2.0}
    (out / "run.yaml").write_text(yaml.safe_dump({"settings": settings}))
    rc = main(["--dataset", "synthetic", "--depth", "8", "--variant", "epsilon", "--epsilon", "2.5",
               "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "belongs to a different configuration" in err and "epsilon: 2.0 there, 2.5 now" in err
    assert sorted(os.listdir(out)) == ["run.yaml"]


def test_bad_input_fails_before_tensorflow_starts(tmp_path):
    code = ("import sys; from eps_resnet.cli import main; "
            "rc = main(sys.argv[1:]); print('tensorflow' in sys.modules); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "train", "--dataset", "cifar10", "--depth", "100",
                        "--variant", "standard", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout.strip() == "False"
