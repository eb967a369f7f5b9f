#!/usr/bin/env python
"""Which of TensorFlow's CPU kernels run the CPU's approximate reciprocal instructions?

``rcpps``/``rsqrtps`` (and their scalar and VEX forms) return an approximation whose bits are the
CPU vendor's own: Intel's and AMD's differ, so a kernel that uses them (even refined by a Newton
step, as Eigen's fast math does) computes other last bits on an Intel Xeon than on an AMD EPYC.

This script (1) disassembles TensorFlow's kernel library and lists every such instruction with
its function; (2) runs one `eps-resnet train` command under gdb with a breakpoint on each and
counts how often each function executed one; (3) dumps the code oneDNN generates at run time
(ONEDNN_JIT_DUMP) in that run and counts such instructions there. Needs objdump and gdb.

    python benchmarks/approximate_instructions.py                     # golden run, portable
    python benchmarks/approximate_instructions.py -- --cpu-kernels native ...  (a full command)
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cpuid_views import golden_run  # noqa: E402

LIBRARY = "libtensorflow_cc.so.2"
#: the approximate reciprocal (square root) instructions, legacy, VEX and EVEX forms
APPROXIMATE = re.compile(r"^v?(rcp|rsqrt)(ps|ss|14ps|14ss|14pd|14sd|28ps|28ss)\b")
#: what gdb runs: a breakpoint per site that counts and continues, the counts written at exit
GDB_SCRIPT = r'''
import collections, gdb, json, os
sites = json.load(open(os.environ["APPROX_SITES"]))
hits = collections.Counter()
class Site(gdb.Breakpoint):
    def stop(self):
        hits[self.function] += 1
        return False
def loaded(event):
    if not event.new_objfile.filename.endswith(sites["library"]) or hits["__set__"]:
        return
    for line in gdb.execute("info sharedlibrary", to_string=True).splitlines():
        if line.rstrip().endswith(sites["library"]):
            base = int(line.split()[0], 16) - sites["text"]
    for address, function in sites["sites"]:
        Site("*0x%x" % (base + address), internal=True).function = function
    hits["__set__"] = 1
def exited(event):
    hits.pop("__set__", None)
    json.dump(dict(hits), open(os.environ["APPROX_HITS"], "w"))
gdb.events.new_objfile.connect(loaded)
gdb.events.exited.connect(exited)
for command in ("set pagination off", "set confirm off", "handle SIGSEGV nostop noprint pass",
                "handle SIGPIPE nostop noprint pass", "set detach-on-fork on", "run"):
    gdb.execute(command)
'''


def sites(library: str) -> tuple[int, list[tuple[int, str]]]:
    """(address of .text, [(address, function)]) of the approximate instructions in ``library``."""
    sections = subprocess.run(["objdump", "-h", library], capture_output=True, text=True).stdout
    text = next(int(line.split()[3], 16) for line in sections.splitlines()
                if len(line.split()) > 3 and line.split()[1] == ".text")
    found, function = [], "?"
    with subprocess.Popen(["objdump", "-d", "-C", "--no-show-raw-insn", library],
                          stdout=subprocess.PIPE, text=True, errors="replace") as dump:
        for line in dump.stdout:
            if line.endswith(">:\n"):
                function = line[line.index("<") + 1:-3]
            elif "\t" in line:
                address, _, instruction = line.partition(":\t")
                if APPROXIMATE.match(instruction.strip()):
                    found.append((int(address, 16), function))
    return text, found


def short(function: str) -> str:
    """A kernel's name that a reader can find: TensorFlow's ops and Eigen's functors in it, or
    the function's own name without its template and argument lists."""
    names = re.findall(r"tensorflow::(?:functor::)?[A-Z]\w+|scalar_\w+_op", function)
    if names:
        return ", ".join(dict.fromkeys(names))
    bare = re.sub(r"<[^<>]*>", "", re.sub(r"<[^<>]*>", "", function))
    qualified = re.findall(r"([A-Za-z_][\w:]*::[\w~]+)\(", bare)
    return qualified[0] if qualified else function[:80]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train_args", nargs="*", help="`eps-resnet train` flags after --, without "
                   "--out (default: the golden test's run, on digits prepared here)")
    a = p.parse_args()
    for tool in ("objdump", "gdb"):
        if shutil.which(tool) is None:
            sys.exit(f"approximate_instructions.py: {tool} not found")
    import json

    import importlib.util

    tensorflow = importlib.util.find_spec("tensorflow")  # its folder: TensorFlow is not started
    library = os.path.join(tensorflow.submodule_search_locations[0], LIBRARY)
    text, found = sites(library)
    by_function = collections.Counter(short(f) for _, f in found)
    print(f"{LIBRARY}: {len(found)} approximate reciprocal instructions in "
          f"{len({f for _, f in found})} functions, e.g. {', '.join(list(by_function)[:6])}")
    with tempfile.TemporaryDirectory() as tmp:
        args = a.train_args or golden_run(tmp)
        for name, content in (("sites.json", {"library": LIBRARY, "text": text, "sites": found}),):
            json.dump(content, open(os.path.join(tmp, name), "w"))
        script = os.path.join(tmp, "count.py")
        open(script, "w").write(GDB_SCRIPT)
        jit = os.path.join(tmp, "jit")
        os.mkdir(jit)
        env = {**os.environ, "APPROX_SITES": os.path.join(tmp, "sites.json"),
               "APPROX_HITS": os.path.join(tmp, "hits.json"), "ONEDNN_JIT_DUMP": "1"}
        done = subprocess.run(["gdb", "-batch", "-x", script, "--args", sys.executable, "-m",
                               "eps_resnet.cli", "train", *args, "--out", os.path.join(tmp, "run")],
                              env=env, cwd=jit, capture_output=True, text=True)
        if not os.path.exists(env["APPROX_HITS"]):
            sys.exit(f"approximate_instructions.py: the run under gdb failed:\n{done.stdout[-3000:]}"
                     f"{done.stderr[-3000:]}")
        hits = json.load(open(env["APPROX_HITS"]))
        print(f"executed in `eps-resnet train {' '.join(args)}`:")
        for function, n in sorted(hits.items(), key=lambda kv: -kv[1]):
            print(f"  {n:8d}  {short(function)}")
        if not hits:
            print("  none")
        dumps = glob.glob(os.path.join(jit, "*.bin"))
        count = 0
        for path in dumps:
            dis = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", path],
                                 capture_output=True, text=True).stdout
            count += sum(1 for line in dis.splitlines() if "\t" in line and
                         APPROXIMATE.match(line.split("\t")[-1].strip()))
        print(f"oneDNN's generated kernels in that run: {len(dumps)}, with {count} approximate "
              "reciprocal instructions")


if __name__ == "__main__":
    main()
