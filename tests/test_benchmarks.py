"""The benchmark scripts run and print their tables (at tiny sizes: speed goals are read off their
full runs, never asserted in a test)."""
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


def run(script, *args, timeout=600):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return r.stdout


def number(pattern, text):
    m = re.search(pattern, text)
    assert m, (pattern, text)
    return float(m.group(1))


def test_loop_overhead_compares_the_full_path_with_a_bare_loop():
    out = run("loop_overhead.py", "--steps", "4", "--warmup", "2", "--rounds", "1")
    full = number(r"\| full \(trainer, callbacks, monitors, ordered input\) \| ([\d.]+) \|", out)
    bare = number(r"\| bare session.run\(train_op\) \| ([\d.]+) \|", out)
    assert full > 0 and bare > 0
    assert number(r"full / bare: ([\d.]+);", out) == pytest.approx(full / bare, abs=0.002)
    assert "AMD" in out or "Intel" in out or "CPU (" in out  # the CPU is named


def test_dataflow_throughput_measures_workers_and_the_input_ceiling():
    out = run("dataflow_throughput.py", "--seconds", "0.3", "--train-images", "600",
              "--imagenet-images", "64", "--workers", "1", "--graph-workers", "1")
    for pipeline in ("CIFAR train", "SVHN train", "ImageNet train"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {pipeline}"))
        computed, per_worker, into_graph = (float(c) for c in row.strip("| ").split(" | ")[1:])
        assert computed > 0 and per_worker == computed and into_graph > 0, row
