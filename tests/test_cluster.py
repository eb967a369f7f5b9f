"""The workflow on a real single-node Slurm, through the project's own profiles/slurm.

Only the test cluster's settings are layered on top of the profile, on the command line: its
partition, no account, squeue as the status command (no accounting database here), one CPU per
job (the node has two). Everything else (executor, retries, rerun-incomplete, resources from the
config) is the user's profile as shipped.
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest
import yaml

from slurm_cluster import LocalSlurm, SlurmUnavailable
from helpers import BIN, ROOT, job_counts, load

pytestmark = pytest.mark.slow

TEST_CLUSTER = ["--default-resources", "slurm_partition=debug", "runtime=10", "mem_mb=1500",
                "--slurm-no-account", "--slurm-status-command", "squeue",
                "--slurm-init-seconds-before-status-checks", "2", "--jobs", "4"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LocalSlurm(str(tmp_path_factory.mktemp("slurm")))
    try:
        cluster.start()
    except SlurmUnavailable as e:
        cluster.stop()
        pytest.skip(f"no local Slurm: {e}")
    try:
        yield cluster
    finally:
        cluster.stop()


def snakemake_slurm(tmp_path, config_file, *extra, targets=(), timeout=240, background=False):
    cmd = ["timeout", "-k", "10", str(timeout), os.path.join(BIN, "snakemake"), *map(str, targets),
           "--snakefile", os.path.join(ROOT, "workflow", "Snakefile"),
           "--profile", os.path.join(ROOT, "profiles", "slurm"), *TEST_CLUSTER,
           "--directory", str(tmp_path), "--configfile", str(config_file), *extra]
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
    env.pop("SLURM_JOB_ID", None)
    if background:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def cluster_config(tmp_path, experiment: dict):
    config = load("demo.yaml")
    config.update(results_dir=str(tmp_path / "results"), figures_dir=str(tmp_path / "figures"),
                  data_dir=str(tmp_path / "data"),
                  experiments={"digits_cifar": experiment})
    for kind in ("train", "evaluate", "other"):  # one CPU each (threads 1): the node has two
        config["resources"][kind].update(mem_mb=1500, threads=1)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_demo_runs_through_the_slurm_profile(slurm, tmp_path):
    # the tiny demo's CIFAR-family experiment, its training runs asking for one GPU each
    cfg = cluster_config(tmp_path, {
        "dataset": "digits", "depths": [8], "variants": ["standard"], "epsilons": [10.0],
        "lr_schedule": "adaptive", "epochs": {"baseline": 2, "epsilon": 2},
        "steps_per_epoch": 3, "batch": 16, "gpus": 1})
    planned = job_counts(snakemake_slurm(tmp_path, cfg, "-n").stdout)
    r = snakemake_slurm(tmp_path, cfg, "--verbose")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    submitted = slurm.log().count("_slurm_rpc_submit_batch_job")
    # seconds of work: run locally
    local = ("all", "parse_experiment", "figure", "summary", "figures_page")
    assert submitted == sum(n for rule, n in planned.items() if rule not in local)
    assert out.count("--cpus-per-task=1") >= submitted  # CPUs from each rule's threads
    assert out.count("--gpus=1") >= 2 or out.count("--gpus 1") >= 2  # both training jobs
    # training jobs ask for SIGTERM before their time limit (the profile's set-resources)
    assert out.count("--signal=TERM@300") >= 2, out[-6000:]
    for run in ("digits-d8-standard", "digits-d8-epsilon-e10"):
        log = (tmp_path / "results" / "logs" / "train" / "digits_cifar" / f"{run}.log").read_text()
        # the GPU slots stepped aside: the id is Slurm's (fake gres devices 0 and 1)
        assert re.search(r"under SLURM job \d+: CUDA_VISIBLE_DEVICES=[01] \(the scheduler's\)", log)
    figures = sorted(os.listdir(tmp_path / "figures"))
    assert figures == sorted(f"digits_cifar-{k}.{ext}" for ext in ("pdf", "png")
                             for k in ("blocks", "compression-ratio", "lr", "val-error"))
    summary = (tmp_path / "results" / "summary.csv").read_text()
    assert "digits-d8-standard" in summary and "digits-d8-epsilon-e10" in summary


def test_cancelled_training_resumes_with_rerun_incomplete(slurm, tmp_path):
    cfg = cluster_config(tmp_path, {
        "dataset": "digits", "depths": [8], "variants": ["standard"], "epochs": {"baseline": 3},
        "steps_per_epoch": 40, "batch": 32, "gpus": 1})
    run = tmp_path / "results" / "runs" / "digits_cifar" / "digits-d8-standard"
    # without the profile's retries, so that the cancelled job stays failed until the rerun
    proc = snakemake_slurm(tmp_path, cfg, "--retries", "0", targets=[run / "train.done"],
                           background=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (run / "model-40.index").exists():
            time.sleep(0.2)
        assert (run / "model-40.index").exists(), "the first epoch never finished"
        jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
        assert jobs, "no running Slurm job to cancel"
        subprocess.run(["scancel", *jobs], check=True)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
    assert proc.returncode != 0
    assert not (run / "train.done").exists() and not (run / "model-120.index").exists()
    # scancel's SIGTERM stopped training as Ctrl-C does: resumable, and run.yaml says so
    assert yaml.safe_load((run / "run.yaml").read_text())["status"] == "interrupted"
    r = snakemake_slurm(tmp_path, cfg, "--rerun-incomplete", targets=[run / "train.done"])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    stats = json.load(open(run / "stats.json"))
    assert [s["epoch_num"] for s in stats if "val_error" in s] == [1, 2, 3]
    assert "Resuming from" in (run / "log.log").read_text()
