"""Reproducible to the bit: the same command and seed give an identical stats.json (both network
families, all variants, one or several data workers), another seed does not, a run killed and
resumed equals the uninterrupted one, and `eps-resnet compare` says so with its exit code."""
import os
import time

import pytest
import yaml

from eps_resnet.cli import main
from helpers import ROOT, eps_resnet_cmd, uninterrupted_and_resumed

pytestmark = pytest.mark.slow

SYNTHETIC = ["--dataset", "synthetic", "--batch", "16", "--steps-per-epoch", "8", "--epochs", "2"]


def train(out, *args):
    assert main(["train", *args, "--out", str(out)]) == 0
    return out


def same(a, b) -> bool:
    return (a / "stats.json").read_bytes() == (b / "stats.json").read_bytes()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "digits"
    assert main(["prepare", "digits", "--out", str(out)]) == 0
    return str(out)


@pytest.mark.parametrize("args", [
    ["--depth", "8", "--variant", "epsilon", "--epsilon", "1.0"],
    ["--depth", "8", "--variant", "standard"],
    ["--depth", "18", "--family", "imagenet", "--image-size", "32", "--classes", "10",
     "--variant", "side"],
], ids=["cifar-epsilon", "cifar-standard", "imagenet-side"])
def test_same_seed_same_numbers_on_synthetic_data(tmp_path, capsys, args):
    a = train(tmp_path / "a", *SYNTHETIC, *args, "--seed", "5")
    b = train(tmp_path / "b", *SYNTHETIC, *args, "--seed", "5")
    assert same(a, b)
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip().endswith("identical")
    if "epsilon" not in args:
        return  # another seed's difference is checked once, on the ε-ResNet
    c = train(tmp_path / "c", *SYNTHETIC, *args, "--seed", "6")
    assert not same(a, c)
    assert main(["compare", str(a), str(c)]) == 1
    report = capsys.readouterr().out
    assert "first difference: epoch 1" in report and report.strip().endswith("different")
    assert main(["compare", str(a), str(c), "--tolerance", "1e9"]) == 0


@pytest.mark.parametrize("family", ["cifar", "imagenet"])
def test_digits_identical_with_one_or_several_data_workers(tmp_path, digits, family):
    args = ["--dataset", "digits", "--data-dir", digits, "--steps-per-epoch", "6", "--epochs", "2",
            "--seed", "3", "--variant", "epsilon", "--epsilon", "6"]
    # the ImageNet-family ResNet-18 at a smaller batch: what is compared is the batches' order
    args += (["--depth", "14", "--batch", "32"] if family == "cifar"
             else ["--depth", "18", "--family", "imagenet", "--batch", "16"])
    one = train(tmp_path / "one", *args, "--data-workers", "1")
    two = train(tmp_path / "two", *args, "--data-workers", "2")
    assert same(one, two)
    # ResNet-18 on 16x16 digits ends on 2x2 and 1x1 maps, whose input gradients get Eigen's
    # kernel where TensorFlow's own kernels run (training.kernels); oneDNN's (the portable
    # kernels of this suite) replace the op, label and all
    from eps_resnet.training.kernels import onednn_rewrites_on

    assert ("12 convolution input gradients" in _log(two)) \
        is (family == "imagenet" and not onednn_rewrites_on())
    record = yaml.safe_load((two / "run.yaml").read_text())
    assert record["settings"]["seed"] == 3 and record["settings"]["deterministic"] is True
    assert record["determinism"]["op_determinism"] is True
    env = record["environment"]
    assert env["snakemake"] and env["tensorflow"].startswith("2.21") and env["python"]
    assert env["cpu"]["model"] and isinstance(env["cpu"]["flags"], list)
    assert env["dataset"]["name"] == "digits"
    assert set(env["dataset"]["checksums"]) >= {"train_images.npy", "val_images.npy", "mean.npy"}
    assert record["settings"]["precision"] == "fp32" and "git_commit" in env
    # the lock the environment is made from (make setup), by its hash
    import hashlib
    import sys

    name = f"requirements/lock-py{sys.version_info[0]}.{sys.version_info[1]}.txt"
    with open(os.path.join(ROOT, name), "rb") as f:
        assert env["lock"] == {"file": name, "sha256": hashlib.sha256(f.read()).hexdigest()}


@pytest.mark.parametrize("moment", ["during epoch 3", "after checkpoint 2"])
def test_killed_and_resumed_equals_uninterrupted(tmp_path, moment):
    args = eps_resnet_cmd("train", "--dataset", "synthetic", "--depth", "8", "--variant",
                          "epsilon", "--epsilon", "1.5", "--batch", "16", "--steps-per-epoch", "20",
                          "--epochs", "3", "--seed", "2")

    def ready(run):
        if not (run / "model-40.index").exists():
            return False
        if moment == "during epoch 3":  # some steps of epoch 3 trained, then lost with the kill
            if "Epoch 3" not in _log(run):
                return False
            time.sleep(0.3)
        return True

    whole, resumed = uninterrupted_and_resumed(args, tmp_path, ready)
    assert "Resuming from" in _log(resumed)
    assert same(whole, resumed)


def _log(run):
    path = run / "log.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_compare_names_how_two_runs_were_run_differently(tmp_path, capsys):
    """Two run folders whose run.yaml differ in the CPU kernels and the CPU: compare names both
    beside the first difference (what can explain other last bits)."""
    for name, kind, isa, sizes, model, cost in (
            ("a", "portable", "AVX2", {"onednn": "32K/512K/16M"}, "AMD EPYC", 2.25),
            ("b", "native", None, "as detected", "Intel Xeon", 2.5)):
        run = tmp_path / name
        run.mkdir()
        (run / "stats.json").write_text(f'[{{"epoch_num": 1, "global_step": 10, "cost": {cost}}}]')
        (run / "run.yaml").write_text(yaml.safe_dump({
            "settings": {"precision": "fp32"},
            "determinism": {"op_determinism": True, "threads": 1,
                            "cpu_kernels": {"kind": kind, "ONEDNN_MAX_CPU_ISA": isa,
                                            "cache_sizes": sizes}},
            "environment": {"cpu": {"model": model}, "tensorflow": "2.21.0"}}))
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert ("run differently: CPU kernels: portable vs native; oneDNN instruction set: AVX2 vs "
            "None; pinned cache sizes: onednn 32K/512K/16M vs as detected; CPU: AMD EPYC vs Intel "
            "Xeon") in out
    assert "first difference: epoch 1, cost: 2.25 vs 2.5" in out


def test_cpu_kernels_settings(monkeypatch):
    """Native by default, or what EPS_RESNET_CPU_KERNELS says (always native for mixed
    precision); portable mixed and an unknown kind are refused in one line."""
    from eps_resnet.training.settings import SettingsError, TrainSettings

    base = dict(dataset="synthetic", depth=8, variant="standard", out="x")
    monkeypatch.delenv("EPS_RESNET_CPU_KERNELS")
    assert TrainSettings(**base).resolved().cpu_kernels == "native"
    monkeypatch.setenv("EPS_RESNET_CPU_KERNELS", "portable")
    assert TrainSettings(**base).resolved().cpu_kernels == "portable"
    assert TrainSettings(**base, precision="mixed").resolved().cpu_kernels == "native"
    monkeypatch.setenv("EPS_RESNET_CPU_KERNELS", "fast")
    with pytest.raises(SettingsError, match="^EPS_RESNET_CPU_KERNELS='fast' is unknown"):
        TrainSettings(**base).resolved()
    monkeypatch.setenv("EPS_RESNET_CPU_KERNELS", "portable")
    with pytest.raises(SettingsError, match="^--cpu-kernels portable cannot run --precision mixed"):
        TrainSettings(**base, precision="mixed", cpu_kernels="portable").resolved()
    with pytest.raises(SettingsError, match="^--cpu-kernels 'fast' is unknown"):
        TrainSettings(**base, cpu_kernels="fast").resolved()


def test_native_kernels_in_a_child_of_a_portable_process_are_the_users_choice(tmp_path):
    """A portable process (a Snakemake job's parent, a benchmark, a test) exports the portable
    values; its child asked for native kernels must still get the user's own, as TensorFlow
    reads them: here the user switched oneDNN off and left its instruction set to the CPU."""
    import subprocess
    import sys

    child = ("import os\n"
             "from eps_resnet.compat import use_cpu_kernels\n"
             "use_cpu_kernels(os.environ['KIND'])\n"
             "from tensorflow.python.util import _pywrap_util_port\n"
             "print(_pywrap_util_port.IsMklEnabled(), os.environ.get('ONEDNN_MAX_CPU_ISA'))\n")
    parent = ("import subprocess, sys\n"
              "import eps_resnet  # portable from here on, and so is the environment it exports\n"
              "sys.exit(subprocess.call([sys.executable, '-c', sys.argv[1]]))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("EPS_RESNET_USER_CPU_ENV", "ONEDNN_MAX_CPU_ISA")}
    seen = {}
    for kind in ("native", "portable"):
        done = subprocess.run([sys.executable, "-c", parent, child], capture_output=True,
                              text=True, env={**env, "TF_ENABLE_ONEDNN_OPTS": "0", "KIND": kind})
        assert done.returncode == 0, done.stderr[-2000:]
        seen[kind] = done.stdout.split()
    assert seen == {"native": ["False", "None"], "portable": ["True", "AVX2"]}




def test_portable_kernels_pin_the_cache_sizes_of_eigen_and_onednn():
    """Eigen's and oneDNN's blocking, and with it the summation order of long reductions, follow
    the cache sizes they hold: a portable process (this one) holds the fixed ones in Eigen's copy
    in each TensorFlow library with kernels, in oneDNN's CPU description and in TensorFlow's
    oneDNN matmul kernels, whatever this CPU's caches, and run.yaml's record says so."""
    import tensorflow as tf

    from eps_resnet import compat, cpu_caches

    tf_dir = os.path.dirname(tf.__file__)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:  # large enough to block
        sess.run(tf.compat.v1.matmul(tf.ones([300, 600]), tf.ones([600, 300])))
    held = cpu_caches.current(tf_dir)
    assert set(cpu_caches.LIBRARIES) | {"oneDNN"} <= set(held)
    assert any(name.startswith("TensorFlow oneDNN kernels") for name in held)
    assert set(held.values()) == {cpu_caches.PORTABLE_SIZES}
    assert compat.cpu_kernels()["cache_sizes"] == {"eigen": "32K/512K/16M",
                                                   "onednn": "32K/512K/16M"}
