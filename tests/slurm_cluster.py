"""A real single-node Slurm on localhost for the cluster tests.

Installs Debian's slurm-wlm and munge when missing (as root), writes the configuration into a
private folder (two fake GPUs through gres, so GPU requests are really scheduled), starts munged,
slurmctld and slurmd, waits for the node to be idle, and stops all of them by their pids at the
end, leaving /etc/slurm as it was found.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be stood up here (not root, packages not installable); tests skip."""


#: where Debian puts the daemons; root's PATH may lack them (Debian 12's su without -l)
SYSTEM_BINARIES = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def _which(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_BINARIES])
    return shutil.which(name, path=path)


def _run(cmd, **kw):
    return subprocess.run([_which(cmd[0]) or cmd[0], *cmd[1:]], capture_output=True, text=True, **kw)


def ensure_packages() -> None:
    if all(_which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("slurm-wlm and munge are not installed and installing them needs root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"]):
        r = _run(cmd, env=env, timeout=600)
        if r.returncode:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed: {r.stderr.strip()[-300:]}")


class LocalSlurm:
    ETC = "/etc/slurm"

    def __init__(self, folder: str, gpus: int = 2):
        self.dir = os.path.abspath(folder)
        self.gpus = gpus
        self.pids: dict[str, int] = {}
        self._moved_etc = None
        self._linked = False

    # -- configuration -------------------------------------------------------------------------
    def _write_config(self):
        d = self.dir
        for sub in ("state", "spool", "log", "munge"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, "munge"), 0o700)
        key = os.path.join(d, "munge", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        for i in range(self.gpus):  # behave as /dev/null; gres only needs device files
            dev = os.path.join(d, f"nvidia{i}")
            if not os.path.exists(dev):
                os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
        node = _run(["slurmd", "-C"]).stdout.splitlines()[0]
        host = socket.gethostname()
        node = " ".join(p for p in node.split() if not p.startswith("UpTime"))
        conf = f"""ClusterName=epsresnet-test
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.socket.2
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
GresTypes=gpu
SchedulerParameters=sched_interval=1
{node} Gres=gpu:{self.gpus} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        with open(os.path.join(d, "slurm.conf"), "w") as f:
            f.write(conf)
        files = f"{d}/nvidia[0-{self.gpus - 1}]" if self.gpus > 1 else f"{d}/nvidia0"
        with open(os.path.join(d, "gres.conf"), "w") as f:
            f.write(f"AutoDetect=off\nNodeName={host} Name=gpu File={files}\n")

    def _link_etc(self):
        # The plugin's in-job srun drops SLURM_CONF: the config must be at /etc/slurm.
        if os.path.lexists(self.ETC):
            self._moved_etc = self.ETC + f".eps-resnet-test-{os.getpid()}"
            os.rename(self.ETC, self._moved_etc)
        os.symlink(self.dir, self.ETC)
        self._linked = True

    # -- daemons -------------------------------------------------------------------------------
    def start(self, timeout: float = 60):
        ensure_packages()
        if os.geteuid() != 0:
            raise SlurmUnavailable("the test cluster's daemons run as root")
        self._write_config()
        self._link_etc()
        d = self.dir
        r = _run(["munged", "--force", "-S", f"{d}/munge/munge.socket.2",
                  f"--key-file={d}/munge/munge.key", f"--pid-file={d}/munge/munged.pid"])
        if r.returncode:
            raise SlurmUnavailable(f"munged did not start: {r.stderr.strip()}")
        self.pids["munged"] = self._pid(f"{d}/munge/munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            r = _run([daemon, "-f", f"{d}/slurm.conf"])
            if r.returncode:
                raise SlurmUnavailable(f"{daemon} did not start: {r.stderr.strip()}")
        self.pids["slurmctld"] = self._pid(f"{d}/slurmctld.pid")
        self.pids["slurmd"] = self._pid(f"{d}/slurmd.pid")
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = _run(["sinfo", "-h", "-o", "%T"]).stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.5)
        raise SlurmUnavailable(f"the node did not become idle (state {state!r}); see {d}/log")

    @staticmethod
    def _pid(path, wait=10.0):
        deadline = time.time() + wait
        while time.time() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            time.sleep(0.1)
        raise SlurmUnavailable(f"no pid file {path}")

    def stop(self):
        _run(["scontrol", "shutdown"], timeout=30)
        deadline = time.time() + 15
        for name in ("slurmctld", "slurmd", "munged"):
            pid = self.pids.get(name)
            if not pid:
                continue
            if name == "munged":
                _kill(pid, signal.SIGTERM)
            while _alive(pid) and time.time() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                _kill(pid, signal.SIGKILL)
        if self._linked and os.path.islink(self.ETC):
            os.unlink(self.ETC)
        if self._moved_etc:
            os.rename(self._moved_etc, self.ETC)

    # -- queries ---------------------------------------------------------------------------------
    def log(self) -> str:
        with open(os.path.join(self.dir, "log", "slurmctld.log"), errors="replace") as f:
            return f.read()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
