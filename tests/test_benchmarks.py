"""The benchmark scripts run and print their tables (at tiny sizes: speed goals are read off their
full runs, never asserted in a test)."""
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT, compiler_here, table_rows

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


def row_of(text, first):
    """The cells after the first of the table row whose first cell begins with ``first``."""
    found = [r[1:] for r in table_rows(text) if r[0].startswith(first)]
    assert found, (first, text)
    return found[0]


def row_after(text, header):
    """The cells of the first row of the table whose header row begins with ``header``."""
    rows = table_rows(text)
    at = next(i for i, r in enumerate(rows) if r[0] == header)
    return rows[at + 1]


def test_loop_overhead_compares_the_full_path_with_a_bare_loop():
    out = run("loop_overhead.py", "--steps", "4", "--warmup", "2", "--rounds", "1")
    full = float(row_of(out, "full (trainer, callbacks, monitors, ordered input)")[0])
    bare_printed = row_of(out, "bare session.run(train_op)")[0]
    bare = float(bare_printed)
    assert full > 0 and bare > 0
    # the printed ratio is of the unrounded rates: it lies within what the printed rates'
    # rounding (half their last digit) allows, plus the ratio's own rounding
    half = 0.5 * 10.0 ** -len(bare_printed.partition(".")[2])
    ratio = number(r"full / bare: ([\d.]+);", out)
    assert (full - half) / (bare + half) - 0.0006 <= ratio <= (full + half) / (bare - half) + 0.0006
    assert "AMD" in out or "Intel" in out or "CPU (" in out  # the CPU is named


def test_dataflow_throughput_measures_workers_and_the_input_ceiling():
    out = run("dataflow_throughput.py", "--seconds", "0.3", "--train-images", "600",
              "--imagenet-images", "64", "--workers", "1", "--graph-workers", "1")
    for pipeline in ("CIFAR train", "SVHN train", "ImageNet train"):
        row = row_of(out, pipeline)
        computed, per_worker, into_graph = (float(c) for c in row)
        assert computed > 0 and per_worker == computed and into_graph > 0, row


def test_mixed_precision_without_bfloat16_stops_before_measuring():
    from eps_resnet.compat import visible_gpus
    from eps_resnet.training.devices import has_bfloat16
    from eps_resnet.training.provenance import cpu

    if has_bfloat16(cpu()["flags"]) or visible_gpus():
        pytest.skip("this machine can measure mixed precision: nothing to refuse")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "train_throughput.py"),
                        "--precision", "fp32", "mixed"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "round 1" not in r.stderr  # nothing was measured
    assert r.stderr.strip().startswith("train_throughput.py: --precision mixed needs a CPU with")
    assert len(r.stderr.strip().splitlines()) == 1


def test_cpu_kernels_benchmark_prints_both_kinds_and_their_ratio():
    out = run("cpu_kernels.py", "--units", "1", "--batch", "8", "--steps", "3", "--warmup", "1",
              "--rounds", "1")
    assert "CPU kernels, ResNet-8 epsilon" in out
    portable, native, ratio = (float(x) for x in row_after(out, "portable img/s"))
    assert portable > 0 and native > 0 and ratio == pytest.approx(portable / native, rel=0.02)


def test_input_gradient_kernels_benchmark_prints_both_kernels_per_shape_and_per_network():
    # the network part on the smallest CIFAR-family network (its graph builds fastest)
    out = run("input_gradient_kernels.py", "--family", "cifar", "--depth", "8", "--batch", "4",
              "--steps", "2", "--warmup", "1", "--rounds", "1", "--repeat", "1",
              "--max-shapes", "2")
    rows = [r[4:] for r in table_rows(out) if re.fullmatch(r"\d+", r[0]) and len(r) == 7]
    assert len(rows) == 2 and all(float(c) > 0 and float(e) > 0 for c, e, _ in rows)
    assert "cifar-family ResNet-8 standard, 16x16" in out
    # read after the table's header: a data thread's log line may come after the table
    custom, eigen, speedup = (float(x) for x in row_after(out, "custom everywhere img/s"))
    assert speedup == pytest.approx(eigen / custom, rel=0.02)


def test_mixed_precision_graph_benchmark_counts_both_graphs_after_the_rewrite():
    out = run("mixed_precision_graph.py", "--units", "1", "--batch", "8", "--repeat", "2")
    rows = {r[0]: r[1:] for r in table_rows(out) if r[0] in ("standard", "epsilon")}
    assert set(rows) == {"standard", "epsilon"}
    counts = {v: [int(c.split(" / ")[0]) for c in r] for v, r in rows.items()}
    # the rewrite ran: most full-size ops are bfloat16 and it inserted casts
    assert all(c[0] > c[1] and c[2] > 0 and c[3] > 0 for c in counts.values())
    timed = [r for r in table_rows(out) if r[0].startswith(("max", "copy")) and len(r) == 4]
    assert [form for form, *_ in timed] == ["max pool of abs(x), then max: gate, bfloat16",
                                            "max(x), min(x): gate, float32",
                                            "max(abs(x)): the gate under bfloat16 before",
                                            "max of x's bits as signed and unsigned integers",
                                            "copy of x"]
    for form, f32, bf16, ratio in timed:
        assert float(ratio) == pytest.approx(float(bf16) / float(f32), rel=0.05), form


def test_step_profile_alternates_both_networks_and_splits_the_added_time_by_part():
    out = run("step_profile.py", "--units", "1", "--batch", "8", "--steps", "4", "--traces", "1",
              "--top", "100")
    std, eps, ratio, pairs = (float(x) for x in row_after(out, "standard ms/step"))
    assert std > 0 and eps > 0 and pairs > 0 and ratio == pytest.approx(std / eps, rel=0.01)
    rows = table_rows(out)
    at = next(i for i, r in enumerate(rows) if r[0] == "part")
    parts = {r[0]: (float(r[1]), float(r[2])) for r in rows[at + 1:at + 6]}
    assert set(parts) == {"gate", "block selection", "side output", "rest", "all"}
    # only the gated network has a gate, a selection and a side output; both train the rest
    for part in ("gate", "block selection", "side output"):
        assert parts[part][0] == 0 and parts[part][1] > 0, part
    assert parts["rest"][0] > 0 and parts["rest"][1] > 0
    # per gated block (ResNet-8: three), the gate's time against a copy of its branch
    blocks = [r[:1] + r[2:] for r in rows if re.fullmatch(r"res\d\.\d", r[0])
              and re.fullmatch(r"\d+x\d+x\d+x\d+", r[1])]
    assert [b for b, *_ in blocks] == ["res1.0", "res2.0", "res3.0"]
    # (the printed times are rounded to 0.01 ms: a tiny network's ratio is checked for sign only)
    assert all(float(gate) > 0 and float(copy) > 0 and float(ratio) > 0
               for _, gate, copy, ratio in blocks)
    # the gate's max|F| in fp32: the package's kernel where it can be built, else min F and max F
    assert any(r[:2] == ["PeakMagnitude" if compiler_here() else "Min", "0.00"] for r in rows)


def test_gate_cost_times_the_probe_gates_against_both_baselines():
    out = run("gate_cost.py", "--units", "1", "--batch", "8", "--steps", "4")
    rows = {r[0]: r[1:] for r in table_rows(out) if r[0] != "network"}
    assert list(rows) == ["standard", "side (no gate)", "the paper's gate", "probe: max F, min F",
                          "probe: read one value", "probe: max F, first eighth", "probe: max F"]
    assert rows["standard"][1] == "1.000" and rows["side (no gate)"][2] == "1.000"
    assert all(float(ms) > 0 and float(a) > 0 and float(b) > 0 for ms, a, b in rows.values())
