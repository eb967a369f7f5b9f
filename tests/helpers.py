"""What several test files share: paths, the installed commands, and config files."""
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def eps_resnet_cmd(*args):
    """The command line of the installed ``eps-resnet`` (the venv's, whatever PATH says)."""
    return [sys.executable, "-m", "eps_resnet.cli", *map(str, args)]


def snakemake(*args, cwd=ROOT, timeout=600):
    """Run the project's workflow with the venv's Snakemake (and the venv's eps-resnet on PATH)."""
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
    return subprocess.run([os.path.join(BIN, "snakemake"), "--snakefile",
                           os.path.join(ROOT, "workflow", "Snakefile"), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict:
    """The 'Job stats' table of a dry run: {rule: count}."""
    table = output.split("Job stats:")[-1].split("Reasons:")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
            if m.group(1) != "total"}


def load(name):
    """A config file of config/, as a dict."""
    with open(os.path.join(ROOT, "config", name)) as f:
        return yaml.safe_load(f)


def write(tmp_path, config, name="config.yaml"):
    """A config dict written to a file in ``tmp_path``; returns its path."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def kill_when(argv, ready, timeout=300):
    """Start a command, wait until ``ready()`` is true, then kill -9 it (asserting it was still
    running, so the kill really interrupted it)."""
    import signal
    import time

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()


def uninterrupted_and_resumed(args, tmp_path, ready):
    """Run ``args`` (an `eps-resnet train` command line without --out) once whole and once
    killed when ``ready(run folder)`` and run again; returns both run folders."""
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    subprocess.run(args + ["--out", str(whole)], check=True, capture_output=True, timeout=600)
    kill_when(args + ["--out", str(resumed)], lambda: ready(resumed))
    done = subprocess.run(args + ["--out", str(resumed)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return whole, resumed
