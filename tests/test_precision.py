"""Mixed precision: the gate's decision stays exact on bfloat16 branches, --precision mixed is
refused where the hardware has no bfloat16 or GPU, and on a CPU with bfloat16 units the graph
TensorFlow runs after its rewrite is bfloat16 where it should be and float32 in the gate."""
import dataclasses
import os
import subprocess
import sys

import pytest

from eps_resnet.cli import main
from eps_resnet.training.devices import decide, has_bfloat16
from eps_resnet.training.provenance import cpu
from eps_resnet.training.settings import SettingsError, TrainSettings
from helpers import gate_decisions_match_the_float32_formula

HAS_BF16 = has_bfloat16(cpu()["flags"])
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no avx512_bf16/amx_bf16: the "
                                "oneDNN bfloat16 rewrite cannot run here")


@pytest.mark.parametrize("eps", [2.3, 2.5, 1.8, 0.1, 7.7])
def test_gate_decision_on_bfloat16_branches_is_the_float32_formula(tf, eps):
    """max F and min F of a bfloat16 branch decide as the float32 formula does on the same
    values, at and next to ε (the pooled max|F| of the bfloat16 rewrite is checked where it
    runs, with oneDNN's native kernels: tests/bf16_training.py)."""
    assert gate_decisions_match_the_float32_formula(tf, eps, pooled=False) >= 14


def test_mixed_is_refused_without_bfloat16_or_gpus():
    s = TrainSettings(dataset="synthetic", depth=8, variant="standard", precision="mixed",
                      out="x").resolved()
    with pytest.raises(SettingsError, match=r"--precision mixed needs an NVIDIA GPU or a CPU with "
                       r"bfloat16 units \(avx512_bf16 or amx_bf16\); this CPU has neither"):
        decide(s, 0, ["avx2", "fma", "avx512f"])
    assert decide(s, 0, ["avx2", "avx512_bf16"]).mixed_kind == "onednn_bfloat16"
    assert decide(s, 0, ["amx_bf16"]).mixed_kind == "onednn_bfloat16"
    gpu = decide(dataclasses.replace(s, gpus=None), 2, ["avx2"])
    assert (gpu.mixed_kind, gpu.data_format, gpu.towers, gpu.all_reduce) == (
        "cuda_float16_loss_scaling", "NCHW", 2, "nccl")
    fp32 = decide(dataclasses.replace(s, precision="fp32"), 0, [])
    assert (fp32.mixed_kind, fp32.data_format, fp32.trainer) == (None, "NHWC", "SimpleTrainer")


@pytest.mark.parametrize("opts", ["0", "false"])
def test_mixed_on_a_cpu_is_refused_when_the_user_switched_onednn_off(monkeypatch, opts):
    from eps_resnet.training.train import choose_cpu_kernels

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", opts)
    with pytest.raises(SettingsError, match=rf"^--precision mixed on a CPU is TensorFlow's oneDNN "
                       rf"bfloat16 rewrite, which TF_ENABLE_ONEDNN_OPTS={opts} switches off"):
        choose_cpu_kernels("portable", "onednn_bfloat16")
    choose_cpu_kernels("portable", "cuda_float16_loss_scaling")  # GPUs do not need it
    choose_cpu_kernels("portable", None)


@pytest.mark.skipif(HAS_BF16, reason="this CPU has bfloat16 units: nothing to refuse here")
def test_train_refuses_mixed_on_this_cpu(tmp_path, capsys):
    assert main(["train", "--dataset", "synthetic", "--depth", "8", "--variant", "standard",
                 "--precision", "mixed", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--precision mixed needs" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


@needs_bf16
@pytest.mark.slow
def test_mixed_training_runs_in_bfloat16_with_a_float32_gate(tmp_path):
    """In a process of its own: this one runs the portable CPU kernels, and the bfloat16 ones
    are oneDNN's native kernels (tests/bf16_training.py holds the assertions)."""
    done = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "bf16_training.py"),
                           str(tmp_path / "mixed")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("bfloat16 where it should be, float32 in the gate")