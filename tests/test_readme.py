"""Every command in the READMEs' code blocks works as printed: snakemake commands as dry runs
from the project folder, `eps-resnet` commands up to their --help."""
import os
import re
import shlex
import subprocess

import pytest

from helpers import BIN, ROOT, eps_resnet_cmd

DOCS = ["README.md", "config/README.md"]


def commands(doc: str) -> list[str]:
    """The shell commands of a Markdown file's ```bash blocks (continuations joined, comments
    dropped)."""
    with open(os.path.join(ROOT, doc)) as f:
        text = f.read()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line)
    return out


ALL = [(doc, c) for doc in DOCS for c in commands(doc)]


def test_the_readmes_have_commands():
    programs = {shlex.split(c)[0] for _, c in ALL}
    assert {"snakemake", "eps-resnet", "make"} <= programs


@pytest.mark.parametrize("doc,command", [x for x in ALL if x[1].startswith("snakemake")],
                         ids=lambda x: x if isinstance(x, str) and "/" not in x else None)
def test_snakemake_commands_dry_run(doc, command):
    argv = shlex.split(command)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
    r = subprocess.run([os.path.join(BIN, "snakemake"), *argv[1:], "--dry-run", "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = r.stdout + r.stderr
    if "imagenet" in command:
        # the README says these need datasets.imagenet.path; the workflow must say so
        assert r.returncode == 0 or "set datasets.imagenet.path" in output, output[-3000:]
    else:
        assert r.returncode == 0, f"{doc}: {command}\n{output[-3000:]}"


@pytest.mark.parametrize("doc,command", [x for x in ALL if x[1].startswith("eps-resnet")])
def test_eps_resnet_commands_exist(doc, command):
    sub = shlex.split(command)[1]
    r = subprocess.run(eps_resnet_cmd(sub, "--help"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{doc}: {command}\n{r.stderr[-2000:]}"


@pytest.mark.parametrize("doc,command", [x for x in ALL if x[1].startswith("make")])
def test_make_targets_exist(doc, command):
    r = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, f"{doc}: {command}\n{r.stderr[-2000:]}"
