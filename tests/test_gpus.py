"""The GPU slot allocator: disjoint ids for concurrent holders, freed by a killed holder."""
import os
import signal
import subprocess
import sys

import pytest

from eps_resnet.workflow.gpus import SlotError, hold

HOLDER = """
import sys, time
from eps_resnet.workflow.gpus import hold
with hold(int(sys.argv[1]), total=4, lock_dir=sys.argv[2]) as ids:
    print(",".join(map(str, ids)), flush=True)
    time.sleep(float(sys.argv[3]))
"""


def start(n, lock_dir, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(n), str(lock_dir), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    return p


def test_concurrent_jobs_get_disjoint_ids(tmp_path):
    procs = [start(n, tmp_path, 3) for n in (1, 1, 2)]
    ids = [set(map(int, p.stdout.readline().strip().split(","))) for p in procs]
    for p in procs:
        p.wait(timeout=60)
    assert [len(i) for i in ids] == [1, 1, 2]
    assert set.union(*ids) == {0, 1, 2, 3}  # disjoint: 4 distinct ids for 4 slots


def test_killed_holder_frees_its_slots(tmp_path):
    p = start(4, tmp_path, 60)
    assert p.stdout.readline().strip() == "0,1,2,3"
    with pytest.raises(TimeoutError):
        with hold(1, total=4, lock_dir=str(tmp_path), timeout=1):
            pass
    p.send_signal(signal.SIGKILL)
    p.wait()
    with hold(2, total=4, lock_dir=str(tmp_path), timeout=5) as ids:
        assert len(ids) == 2


def test_more_than_exist_is_an_error(tmp_path):
    with pytest.raises(SlotError, match="5 GPU\\(s\\) asked for, but this machine has 4"):
        with hold(5, total=4, lock_dir=str(tmp_path)):
            pass


def test_gpu_run_sets_cuda_visible_devices(tmp_path):
    env = dict(os.environ, EPS_RESNET_GPUS="2")
    env.pop("SLURM_JOB_ID", None)
    code = "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"
    r = subprocess.run([sys.executable, "-m", "eps_resnet.cli", "gpu-run", "--gpus", "2",
                        "--lock-dir", str(tmp_path), "--", sys.executable, "-c", code],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "0,1"
    # the note goes to stderr, named by the subcommand (not by the command it runs)
    assert r.stderr.strip().splitlines()[-1] == "eps-resnet gpu-run: [gpu slots] CUDA_VISIBLE_DEVICES=0,1"
    # under SLURM the scheduler's CUDA_VISIBLE_DEVICES is left alone
    env.update(SLURM_JOB_ID="7", CUDA_VISIBLE_DEVICES="3")
    r = subprocess.run([sys.executable, "-m", "eps_resnet.cli", "gpu-run", "--gpus", "1",
                        "--lock-dir", str(tmp_path), "--", sys.executable, "-c", code],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "3"


def test_gpu_run_allocates_within_an_existing_cuda_visible_devices(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="5,7")
    env.pop("SLURM_JOB_ID", None)
    code = "import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep(2)"
    cmd = [sys.executable, "-m", "eps_resnet.cli", "gpu-run", "--gpus", "1", "--lock-dir",
           str(tmp_path), "--", sys.executable, "-c", code]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    got = sorted(p.communicate(timeout=120)[0].strip() for p in (first, second))
    assert got == ["5", "7"]  # the user's GPUs, one each, never the others
    r = subprocess.run(cmd[:5] + ["3"] + cmd[6:], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "3 GPU(s) asked for, but CUDA_VISIBLE_DEVICES=5,7" in r.stderr


def test_a_planted_link_in_the_slot_folder_is_never_written_through(tmp_path):
    """Another user's symbolic link named like a slot's lock file: gpu-run stops in one line
    naming it, and the file it points to is left as it was."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    slots = tmp_path / "slots"
    slots.mkdir()
    (slots / "gpu0.lock").symlink_to(target)
    env = dict(os.environ, EPS_RESNET_GPUS="1")
    env.pop("SLURM_JOB_ID", None)
    r = subprocess.run([sys.executable, "-m", "eps_resnet.cli", "gpu-run", "--gpus", "1",
                        "--lock-dir", str(slots), "--", sys.executable, "-c", "pass"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "gpu0.lock is a symbolic link" in r.stderr
    assert target.read_text() == "keep me\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="a second user needs root to become it")
def test_a_second_user_shares_the_slots_of_the_first():
    """The first holder (root here) makes the slot folder; another user (nobody) then holds a
    slot in it too, and the two exclude each other."""
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="eps-resnet-test-slots-")  # pytest's folders are private
    os.chmod(base, 0o755)
    slots = os.path.join(base, "slots")
    try:
        _hold_as_two_users(slots)
    finally:
        shutil.rmtree(base)


def _hold_as_two_users(slots):
    with hold(1, total=2, lock_dir=slots) as mine:
        pid = os.fork()
        if pid == 0:  # the other user: no exec, the modules are already here
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                with hold(1, total=2, lock_dir=slots, timeout=5) as theirs:
                    code = 0 if theirs != mine and len(theirs) == 1 else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert oct(os.stat(slots).st_mode & 0o7777) == "0o1777"
