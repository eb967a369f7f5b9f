#!/usr/bin/env python
"""Does a training run compute other bits when the CPU says it is another CPU?

Runs one `eps-resnet train` command several times, each time with the answers of the ``cpuid``
instruction replaced by another CPU kind's (vendor, cache sizes, instruction-set flags: the
CPUID faulting of benchmarks/cpuid_views.c), and prints per view the SHA-256 of stats.json and
of the trained weights (the checkpoint's variables but the metrics' moving averages). Equal
hashes: nothing that reads the CPU changes the run. The hardware's own arithmetic is not
replaced: an instruction whose results differ between vendors (the approximate reciprocals)
still computes this CPU's; see benchmarks/approximate_instructions.py for those.

Needs Linux with CPUID faulting (Intel CPUs; the "cpuid_fault" flag in /proc/cpuinfo) and gcc.

    python benchmarks/cpuid_views.py                       # the golden test's tiny digits run
    python benchmarks/cpuid_views.py --trace               # also: which code reads which leaf
    python benchmarks/cpuid_views.py -- --dataset synthetic --family imagenet --depth 50 \\
        --image-size 224 --variant standard --batch 8 --steps-per-epoch 2 --epochs 1 --threads 1
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
#: the golden test's run (tests/test_golden.py), portable kernels
GOLDEN = ["--dataset", "digits", "--depth", "8", "--variant", "epsilon", "--epsilon", "7",
          "--batch", "32", "--steps-per-epoch", "6", "--epochs", "2", "--seed", "4",
          "--threads", "1", "--data-workers", "1", "--cpu-kernels", "portable"]
_AVX512 = {"CPUID_CLEAR_7B": (1 << 16) | (1 << 17) | (1 << 21) | (1 << 28) | (1 << 30) | (1 << 31),
           "CPUID_CLEAR_7C": (1 << 1) | (1 << 6) | (1 << 11) | (1 << 12) | (1 << 14)}
_AMX_FP16 = (1 << 22) | (1 << 23) | (1 << 24) | (1 << 25)
#: CPU kinds of this workplace as cpuid describes them (2 cores each, from this CPU's topology)
VIEWS = {
    "this CPU": {},
    "AMD Zen 3 (AVX2; 32K/512K/32M)": {
        "CPUID_VENDOR_AMD": 1, "CPUID_L1": 32 << 10, "CPUID_L2": 512 << 10, "CPUID_L3": 32 << 20,
        **_AVX512, "CPUID_CLEAR_7D": _AMX_FP16 | (1 << 8), "CPUID_CLEAR_71A": (1 << 4) | (1 << 5)},
    "AMD Zen 4 (AVX-512, BF16; 32K/1M/32M)": {
        "CPUID_VENDOR_AMD": 1, "CPUID_L1": 32 << 10, "CPUID_L2": 1 << 20, "CPUID_L3": 32 << 20,
        "CPUID_CLEAR_7D": _AMX_FP16, "CPUID_CLEAR_71A": 1 << 4},
    "AMD Zen 5 (AVX-512, BF16; 48K/1M/32M)": {
        "CPUID_VENDOR_AMD": 1, "CPUID_L1": 48 << 10, "CPUID_L2": 1 << 20, "CPUID_L3": 32 << 20,
        "CPUID_CLEAR_7D": _AMX_FP16},
}


def golden_run(folder: str) -> list[str]:
    """The golden test's `eps-resnet train` flags, on digits prepared into ``folder``."""
    data = os.path.join(folder, "digits")
    subprocess.run([sys.executable, "-m", "eps_resnet.cli", "prepare", "digits", "--out", data],
                   check=True, capture_output=True)
    return [*GOLDEN, "--data-dir", data]


def build_library(folder: str) -> str:
    """Compile cpuid_views.c into ``folder``; exits with one line without gcc."""
    if shutil.which("gcc") is None:
        sys.exit("cpuid_views.py: gcc not found; it compiles benchmarks/cpuid_views.c")
    out = os.path.join(folder, "libcpuid_views.so")
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", out,
                    os.path.join(HERE, "cpuid_views.c"), "-ldl"], check=True)
    return out


def weights_digest(run: str) -> str:
    """SHA-256 of the newest checkpoint's variables, EMA/ (the metrics' averages) left out."""
    import eps_resnet  # noqa: F401
    from eps_resnet.compat import import_tf

    tf = import_tf()
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(run))
    digest = hashlib.sha256()
    for name in sorted(reader.get_variable_to_shape_map()):
        if not name.startswith("EMA/"):
            digest.update(name.encode())
            digest.update(reader.get_tensor(name).tobytes())
    return digest.hexdigest()[:16]


def train(library: str, view: dict, args: list[str], out: str, trace: str | None = None):
    env = {**os.environ, "LD_PRELOAD": library, **{k: str(v) for k, v in view.items()}}
    if trace:
        env["CPUID_TRACE"] = trace
    done = subprocess.run([sys.executable, "-m", "eps_resnet.cli", "train", *args, "--out", out],
                          env=env, capture_output=True, text=True)
    if done.returncode == 97:
        sys.exit(done.stderr.strip().splitlines()[-1])
    if done.returncode != 0:
        sys.exit(f"cpuid_views.py: training failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "stats.json"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16], weights_digest(out)


def readers(trace: str) -> list[str]:
    """``library function: leaves`` per place that executed cpuid (symbols from readelf)."""
    places = collections.defaultdict(set)
    for line in open(trace):
        library, offset, leaf, _ = line.split()
        places[library, int(offset, 16)].add(leaf)
    rows = []
    for (library, offset), leaves in sorted(places.items()):
        rows.append((library, _symbol(library, offset), ", ".join(sorted(leaves))))
    merged = collections.defaultdict(set)
    for library, symbol, leaves in rows:
        merged[os.path.basename(library), symbol].update(leaves.split(", "))
    return [f"{lib}: {sym}: leaves {', '.join(sorted(lv))}" for (lib, sym), lv in sorted(merged.items())]


_TABLES: dict[str, list] = {}


def _symbol(library: str, offset: int) -> str:
    if shutil.which("readelf") is None or not os.path.exists(library):
        return f"0x{offset:x}"
    if library not in _TABLES:
        out = subprocess.run(["readelf", "-Ws", "-C", "--wide", library], capture_output=True,
                             text=True).stdout
        table = []
        for line in out.splitlines():
            parts = line.split(None, 7)
            if len(parts) == 8 and parts[3] == "FUNC" and parts[2].isdigit():
                table.append((int(parts[1], 16), int(parts[2]), parts[7]))
        _TABLES[library] = sorted(table)
    for start, size, name in _TABLES[library]:
        if start <= offset < start + max(size, 1):
            return name.split("(")[0][:100]
    return f"0x{offset:x}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", nargs="+", choices=list(VIEWS), default=list(VIEWS))
    p.add_argument("--trace", action="store_true",
                   help="also list the code that executed cpuid in the first view's run")
    p.add_argument("train_args", nargs="*", help="`eps-resnet train` flags after --, without "
                   "--out (default: the golden test's run, on digits prepared here)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        library = build_library(tmp)
        args = a.train_args or golden_run(tmp)
        trace = os.path.join(tmp, "trace.txt") if a.trace else None
        from eps_resnet.tables import markdown_table

        rows = []
        for i, name in enumerate(a.views):
            stats, weights = train(library, VIEWS[name], args, os.path.join(tmp, f"run{i}"),
                                   trace if i == 0 else None)
            rows.append([name, stats, weights])
            print(f"{name}: stats.json {stats}, weights {weights}", file=sys.stderr, flush=True)
        print(markdown_table(rows, ["CPU as cpuid describes it", "stats.json", "weights"]), end="")
        if trace:
            print(f"\ncode that executed cpuid ({a.views[0]}):")
            for row in readers(trace):
                print(" ", row)


if __name__ == "__main__":
    main()
