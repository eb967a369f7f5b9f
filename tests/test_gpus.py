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
