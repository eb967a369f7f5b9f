"""Every command in the READMEs' code blocks works as printed, in a fresh shell where nothing was
activated (only the block's own `source`/`cd`/`export` lines before it): snakemake commands as
dry runs from the project folder, `make` targets as `make -n`, `eps-resnet` commands up to
their --help."""
import os
import re
import shlex
import subprocess

import pytest

from helpers import ROOT

DOCS = ["README.md", "config/README.md"]
#: lines a block runs first to set its shell up; every other line is a command under test
SETUP = ("source ", ". ", "cd ", "export ")


def blocks(doc: str) -> list[list[str]]:
    """The shell commands of each ```bash block of a Markdown file (continuations joined,
    comments dropped)."""
    with open(os.path.join(ROOT, doc)) as f:
        text = f.read()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = [line.split("#", 1)[0].strip() for line in block.replace("\\\n", " ").splitlines()]
        out.append([line for line in lines if line])
    return out


ALL = [(doc, [line for line in block[:i] if line.startswith(SETUP)], line)
       for doc in DOCS for block in blocks(doc) for i, line in enumerate(block)
       if not line.startswith(SETUP)]


def checked(command: str) -> str:
    """The command as the test runs it: what it would do, without doing it."""
    argv = shlex.split(command)
    if argv[0] == "snakemake":
        return command + " --dry-run --quiet"
    if argv[0] == "make":
        return "make -n " + " ".join(map(shlex.quote, argv[1:]))
    if argv[0] == "eps-resnet":
        return f"eps-resnet {shlex.quote(argv[1])} --help"
    raise AssertionError(f"no way to check {command!r} without running it")


def fresh_shell(setup: list[str], command: str) -> subprocess.CompletedProcess:
    """``command`` after ``setup`` in bash started from a bare environment: the system's PATH,
    no virtual environment, no profile."""
    system_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                  if not p.startswith(ROOT) and ".venv" not in p)
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": system_path, "LANG": "C.UTF-8"}
    script = "\n".join(["set -e", *setup, checked(command)])
    return subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_readmes_have_commands():
    programs = {shlex.split(c)[0] for _, _, c in ALL}
    assert {"snakemake", "make"} <= programs


@pytest.mark.parametrize("doc,setup,command", ALL,
                         ids=[f"{doc}:{command[:60]}" for doc, _, command in ALL])
def test_each_command_works_in_a_fresh_shell(doc, setup, command):
    r = fresh_shell(setup, command)
    output = r.stdout + r.stderr
    if "imagenet" in command:
        # the README says these need datasets.imagenet.path; the workflow must say so
        assert r.returncode == 0 or "set datasets.imagenet.path" in output, output[-3000:]
    else:
        assert r.returncode == 0, f"{doc}: {command}\n{output[-3000:]}"


def test_a_command_without_its_setup_fails_in_a_fresh_shell():
    """The fresh shell is fresh: snakemake is not found without the block's activation."""
    r = fresh_shell([], "snakemake all --cores 1")
    assert r.returncode != 0 and "snakemake" in r.stderr
