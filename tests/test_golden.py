"""The same bits on every x86-64 CPU kind: a tiny digits run, trained with the default portable
CPU kernels (eps_resnet.compat), gives byte for byte the stats.json committed in tests/golden/,
whatever CPU runs the test suite. A failure here means this machine computes other numbers than
the one that wrote the file: compare prints where they part.

To write the file anew (after a change that is meant to change the numbers):
    EPS_RESNET_WRITE_GOLDEN=1 pytest tests/test_golden.py
"""
import os
import shutil
import subprocess

import pytest
import yaml

from helpers import eps_resnet_cmd

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "digits-stats.json")
#: tiny, and fixed in everything that changes the last bits: one thread, one data worker; ε
#: near the branches' responses, so that gates close on some batches and not on others
TRAIN = ["--dataset", "digits", "--depth", "8", "--variant", "epsilon", "--epsilon", "7",
         "--batch", "32", "--steps-per-epoch", "6", "--epochs", "2", "--seed", "4",
         "--threads", "1", "--data-workers", "1", "--cpu-kernels", "portable"]


def test_tiny_digits_run_matches_the_golden_stats_bit_for_bit(tmp_path):
    data, out = tmp_path / "digits", tmp_path / "run"
    subprocess.run(eps_resnet_cmd("prepare", "digits", "--out", str(data)), check=True,
                   capture_output=True, timeout=300)
    # a process of its own: a fresh TensorFlow, as `eps-resnet train` has on any machine
    subprocess.run(eps_resnet_cmd("train", *TRAIN, "--data-dir", str(data), "--out", str(out)),
                   check=True, capture_output=True, timeout=600)
    record = yaml.safe_load((out / "run.yaml").read_text())
    assert record["determinism"]["cpu_kernels"]["kind"] == "portable"
    assert record["determinism"]["cpu_kernels"]["cache_sizes"] == {"eigen": "32K/512K/16M",
                                                                   "onednn": "32K/512K/16M"}
    if os.environ.get("EPS_RESNET_WRITE_GOLDEN"):
        shutil.copyfile(out / "stats.json", GOLDEN)
    golden = tmp_path / "golden"
    golden.mkdir()
    shutil.copyfile(GOLDEN, golden / "stats.json")
    if (out / "stats.json").read_bytes() != (golden / "stats.json").read_bytes():
        where = subprocess.run(eps_resnet_cmd("compare", str(golden), str(out)),
                               capture_output=True, text=True).stdout
        pytest.fail(f"stats.json differs from tests/golden on {record['environment']['cpu']}:\n"
                    f"{where}")
