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
