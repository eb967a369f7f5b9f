"""The Snakemake workflow: dry runs of the paper's config, config errors, and a tiny demo run
end to end (real training, compression, parsing, figures and summary)."""
import os
import re
import subprocess

import pytest

from helpers import (BIN, ROOT, job_counts, load, open_report_results, snakemake, table_rows,
                     write)


def test_dry_run_of_the_paper_experiments(tmp_path):
    r = snakemake("-n", "--directory", tmp_path, "--configfile",
                  os.path.join(ROOT, "config", "experiments.yaml"))
    assert r.returncode == 0, r.stderr[-3000:]
    counts = job_counts(r.stdout)
    # cifar10: standard, side, ε 2.5; cifar100 and svhn: standard, ε; ImageNet has no path here
    assert counts == {"prepare_dataset": 3, "train": 7, "compress": 3,
                      "parse_experiment": 3, "figure": 12,
                      "figures_page": 3, "summary": 1, "all": 1}
    # with an ImageNet folder configured, its figure brings ResNet-101 standard, ε 2.0 and 2.1
    config = load("experiments.yaml")
    config["datasets"]["imagenet"]["path"] = str(tmp_path / "ILSVRC2012")
    r = snakemake("figures/imagenet-val-error.png", "-n", "--directory", tmp_path,
                  "--configfile", write(tmp_path, config))
    assert r.returncode == 0, r.stderr[-3000:]
    assert job_counts(r.stdout) == {"prepare_dataset": 1, "train": 3, "parse_experiment": 1,
                                    "figure": 1}
    assert "--gpus 4" in r.stdout or "gpu=4" in r.stdout


def test_adding_an_epsilon_adds_exactly_its_jobs(tmp_path):
    config = load("experiments.yaml")
    base = job_counts(snakemake("-n", "--directory", tmp_path, "--configfile",
                                write(tmp_path, config, "a.yaml")).stdout)
    config["experiments"]["cifar10"]["epsilons"].append(2.7)
    more = job_counts(snakemake("-n", "--directory", tmp_path, "--configfile",
                                write(tmp_path, config, "b.yaml")).stdout)
    diff = {k: more.get(k, 0) - base.get(k, 0) for k in set(base) | set(more)}
    assert {k: v for k, v in diff.items() if v} == {"train": 1, "compress": 1}


def test_dry_runs_of_the_grid_targets(tmp_path):
    """`paper` builds the whole grid (with ImageNet configured: 29 runs, 16 of them ε-ResNets),
    each group its own runs; `all` stays the seed's (test above)."""
    config = load("experiments.yaml")
    config["datasets"]["imagenet"]["path"] = str(tmp_path / "ILSVRC2012")
    path = write(tmp_path, config)
    r = snakemake("paper", "-n", "--directory", tmp_path, "--configfile", path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert job_counts(r.stdout) == {
        "prepare_dataset": 4, "train": 29, "compress": 16,
        "parse_experiment": 9, "figure": 36, "figures_page": 9,
        "grid_figure": 6, "paper_summary": 1, "paper": 1}
    grid = set(re.findall(r"figures/paper/([\w-]+)\.png", r.stdout))
    assert grid == {"cifar10-depth", "cifar10-epsilon", "cifar100-depth", "svhn-depth",
                    "imagenet-depth", "imagenet-epsilon"}
    for group, trains in (("depth", 16), ("epsilon", 2), ("imagenet152", 1)):
        r = snakemake(group, "-n", "--directory", tmp_path, "--configfile", path)
        assert r.returncode == 0, r.stderr[-3000:]
        counts = job_counts(r.stdout)
        assert counts["train"] == trains and counts[group] == 1, (group, counts)
        assert "summary" not in counts and "compress" not in counts
    config["experiments"]["svhn_depth"]["group"] = "summary"
    r = snakemake("-n", "--directory", tmp_path, "--configfile", write(tmp_path, config, "b.yaml"))
    assert r.returncode != 0
    assert "experiments.svhn_depth.group: 'summary' is the name of a rule" in r.stdout + r.stderr


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(colour="red"), "Additional properties are not allowed ('colour'"),
    (lambda c: c["experiments"]["cifar10"].update(depths="110"), "'110' is not of type 'array'"),
    (lambda c: c["experiments"]["cifar10"].update(epsilons=[-1.0]), "-1.0 is less than the minimum of 0"),
    (lambda c: c["experiments"]["cifar10"].update(dataset="mnist"), "'mnist' is not one of"),
    (lambda c: c["experiments"]["cifar10"].update(depths=[100]),
     "experiments.cifar10.depths: --depth 100 is not a CIFAR-family depth"),
    (lambda c: c["experiments"]["imagenet"].update(depths=[110]),
     "experiments.imagenet.depths: --depth 110 is not an ImageNet-family depth"),
])
def test_bad_config_stops_before_any_job(tmp_path, edit, message):
    config = load("experiments.yaml")
    edit(config)
    r = snakemake("-n", "--directory", tmp_path, "--configfile", write(tmp_path, config))
    assert r.returncode != 0
    assert message in r.stdout + r.stderr


def test_target_of_a_dataset_without_path_names_the_key(tmp_path):
    r = snakemake("figures/imagenet-val-error.png", "-n", "--directory", tmp_path, "--configfile",
                  os.path.join(ROOT, "config", "experiments.yaml"))
    assert r.returncode != 0
    assert "set datasets.imagenet.path in the config" in r.stdout + r.stderr


#: Folder names a user may well write, and a hostile one may: spaces, quotes, `$(...)`, backticks
#: and `;` reach the rules' shell commands, where each would run `touch INJECTED` if unquoted.
HOSTILE = {"data_dir": "data $(touch INJECTED)",
           "results_dir": "results `touch INJECTED`; touch INJECTED",
           "figures_dir": "figures 'q' \"dq\""}


def tiny_config(base):
    """The demo config, cut to the fewest epochs and steps that still run every rule, its data,
    results and figures in folders of :data:`HOSTILE` names under ``base``."""
    config = load("demo.yaml")
    config.update({key: str(base / name) for key, name in HOSTILE.items()})
    for exp in config["experiments"].values():
        exp.update(epochs={"baseline": 2, "epsilon": 2}, steps_per_epoch=3, batch=16, seeds=[0],
                   epsilon_start_epoch=1)
    config["experiments"]["digits_cifar"].update(depths=[8], epsilons=[8.0, 10.0])
    return config


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path):
    config = tiny_config(tmp_path)
    cfg = write(tmp_path, config)
    r = snakemake("--cores", "2", "--directory", tmp_path, "--configfile", cfg, timeout=1500)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-5000:])
    # the hostile folder names were paths, never commands: nothing ran, nothing landed elsewhere
    found = [os.path.join(d, n) for d, dirs, files in os.walk(tmp_path) for n in dirs + files
             if n == "INJECTED"]
    assert not found and "INJECTED" not in os.listdir(ROOT), found
    assert set(os.listdir(tmp_path)) == {"config.yaml", ".snakemake", *HOSTILE.values()}
    results, figure_dir = tmp_path / HOSTILE["results_dir"], tmp_path / HOSTILE["figures_dir"]
    figures = sorted(os.listdir(figure_dir))
    assert figures == sorted(f"{e}-{k}.{ext}" for e in config["experiments"] for ext in ("png", "pdf")
                             for k in ("val-error", "lr", "compression-ratio", "blocks"))
    summary = (results / "summary.csv").read_text()
    for run in ("digits-d8-standard", "digits-d8-side", "digits-d8-epsilon-e10",
                "digits-imagenet-d18-epsilon-e3"):
        assert run in summary
    assert "compressed_eval_error" in summary.splitlines()[0]
    # the HTML report: every figure, its page with captions beside the figures, each
    # experiment's run settings and the summary, displayed
    r = snakemake("--directory", tmp_path, "--configfile", cfg, "--report", tmp_path / "report.html")
    assert r.returncode == 0, r.stderr[-3000:]
    shown = open_report_results(str(tmp_path / "report.html"), [*config["experiments"], "Summary"])
    for exp in config["experiments"]:
        for kind in ("val-error", "lr", "compression-ratio", "blocks"):
            images = shown[(exp, f"figure: {kind}")]["images"]
            assert len(images) == 1 and min(images[0]) > 100, (exp, kind, images)
        assert shown[(exp, "all figures, with captions")]["captions_beside"] == 4
        runs = len(config["experiments"][exp]["variants"]) + len(config["experiments"][exp]["epsilons"])
        settings = shown[(exp, "settings of the runs")]
        assert settings["table_rows"] == 2 * (runs + 1)  # two tables: header + runs
        assert settings["overflow_px"] <= 0
    assert shown[("Summary", "against the paper")]["table_rows"] > 6
    assert shown[("Summary", "against the paper")]["overflow_px"] <= 0  # no column cut off
    # nothing left to do
    r = snakemake("-n", "--cores", "2", "--directory", tmp_path, "--configfile", cfg)
    assert "Nothing to be done" in r.stdout + r.stderr
    # `paper` on top: nothing to train, the grid's figure (two ε at one depth) and summary
    r = snakemake("paper", "--cores", "2", "--directory", tmp_path, "--configfile", cfg)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-5000:])
    assert job_counts(r.stdout + r.stderr) == {"grid_figure": 1, "paper_summary": 1, "paper": 1}
    assert sorted(os.listdir(figure_dir / "paper")) == ["digits-epsilon.pdf",
                                                                  "digits-epsilon.png"]
    # every experiment of the demo is in the group main: the grid's summary has the same runs
    runs = [line.split(",")[0] for line in summary.splitlines()]
    paper = (results / "paper" / "summary.csv").read_text()
    assert [line.split(",")[0] for line in paper.splitlines()] == runs
    # one more ε: exactly its run and compression, and only that experiment's figures, redone
    config["experiments"]["digits_cifar"]["epsilons"].append(9.0)
    r = snakemake("-n", "--cores", "2", "--directory", tmp_path, "--configfile",
                  write(tmp_path, config))
    assert r.returncode == 0, r.stderr[-3000:]
    assert job_counts(r.stdout) == {"train": 1, "compress": 1,
                                    "parse_experiment": 1, "figure": 4,
                                    "figures_page": 1, "summary": 1, "all": 1}
    assert "digits_imagenet-" not in r.stdout.split("Job stats:")[0].replace(
        "digits_imagenet-val-error.png, figures", "")  # no figure of the other experiment


def test_a_run_needing_more_gpus_than_allowed_stops_before_training(tmp_path):
    config = load("experiments.yaml")
    config["datasets"]["imagenet"]["path"] = str(tmp_path / "ILSVRC2012")
    r = snakemake("figures/imagenet-val-error.png", "-n", "--cores", "8", "--resources", "gpu=2",
                  "--directory", tmp_path, "--configfile", write(tmp_path, config))
    assert r.returncode != 0
    assert ("experiments.imagenet.gpus: imagenet-d101-standard needs 4 GPUs but "
            "--resources gpu=2 allows 2") in r.stdout + r.stderr
    r = snakemake("figures/imagenet-val-error.png", "-n", "--cores", "8", "--resources", "gpu=4",
                  "--directory", tmp_path, "--configfile", write(tmp_path, config))
    assert r.returncode == 0, r.stderr[-3000:]


def test_all_without_an_imagenet_path(tmp_path):
    r = snakemake("-n", "--directory", tmp_path, "--configfile",
                  os.path.join(ROOT, "config", "experiments.yaml"))
    assert r.returncode == 0
    assert (r.stdout + r.stderr).count("`all` leaves out imagenet: set datasets.imagenet.path") == 1
    config = load("experiments.yaml")
    config["experiments"] = {"imagenet": config["experiments"]["imagenet"]}
    r = snakemake("-n", "--directory", tmp_path, "--configfile", write(tmp_path, config))
    assert r.returncode != 0
    assert "no experiment can run: imagenet need(s) datasets.imagenet.path" in r.stdout + r.stderr
    assert "expected at least one argument" not in r.stdout + r.stderr


def test_imagenet_targets_without_a_path_stop_in_one_line(tmp_path):
    """The ImageNet figure and an ImageNet-only group without datasets.imagenet.path: one line
    naming the key, no traceback."""
    cfg = os.path.join(ROOT, "config", "experiments.yaml")
    for target, says in (("figures/imagenet-val-error.png",
                          "Error: imagenet-d101-standard: imagenet has no path configured: set "
                          "datasets.imagenet.path"),
                         ("imagenet152", "Error: `imagenet152`: no experiment can run")):
        r = snakemake(target, "-n", "--directory", tmp_path, "--configfile", cfg)
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert says in out and "Traceback" not in out and "InputFunctionException" not in out


def test_report_before_results_says_what_to_run_first(tmp_path):
    r = snakemake("--directory", tmp_path, "--configfile", os.path.join(ROOT, "config", "demo.yaml"),
                  "--report", tmp_path / "report.html")
    assert r.returncode == 1 and not (tmp_path / "report.html").exists()
    out = r.stdout + r.stderr
    assert ("Error: --report collects the workflow's results, and results/demo has none yet "
            "(no summary.csv): run the workflow first") in out and "Traceback" not in out


def test_config_overrides_alone_and_with_a_config_file(tmp_path):
    r = snakemake("-n", "-p", "--directory", tmp_path, "--config", "results_dir=elsewhere")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "elsewhere/runs/cifar10/cifar10-d110-epsilon-e2.5" in r.stdout
    r = snakemake("-n", "-p", "--directory", tmp_path, "--configfile",
                  os.path.join(ROOT, "config", "demo.yaml"), "--config", "results_dir=other")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "other/runs/digits_cifar/" in r.stdout and "cifar10-d110" not in r.stdout


def test_a_wrong_config_is_one_line_naming_the_key(tmp_path):
    config = load("experiments.yaml")
    config["experiments"]["svhn"]["depths"] = ["deep"]
    r = snakemake("-n", "--directory", tmp_path, "--configfile", write(tmp_path, config))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "experiments.svhn.depths.0: 'deep' is not of type 'integer'" in out
    assert "patternProperties" not in out and "$schema" not in out  # no schema dump


def test_config_syntax_errors_name_file_and_line(tmp_path):
    from eps_resnet.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("data_dir: data\nexperiments:\n  a: {dataset: cifar10\n  b: 1\n")
    r = subprocess.run([os.path.join(BIN, "eps-resnet"), "check-config", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"{bad}, line 4, column 4:" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert main(["check-config", os.path.join(ROOT, "config", "demo.yaml")]) == 0


def test_nested_command_line_values_are_the_schemas_types_and_braces_in_paths_are_refused(tmp_path):
    """Snakemake hands a nested `--config` value's numbers over as strings: the workflow reads
    them as the schema's numbers; a { or } in a path (a wildcard to Snakemake) is refused by
    check-config and the workflow in one line naming the key."""
    from eps_resnet.cli import main

    demo = os.path.join(ROOT, "config", "demo.yaml")
    r = snakemake("-n", "--directory", tmp_path, "--configfile", demo, "--config",
                  "resources={evaluate: {gpus: 0, threads: 1}}")
    assert r.returncode == 0, r.stderr[-2000:]
    r = snakemake("-n", "--directory", tmp_path, "--configfile", demo, "--config", "results_dir=r{x}")
    assert r.returncode != 0 and "results_dir: 'r{x}' holds { or }" in r.stdout + r.stderr
    config = load("demo.yaml")
    config["datasets"]["digits"]["path"] = "digits-{copy}"
    assert main(["check-config", str(write(tmp_path, config))]) == 2


def test_seeds_are_an_experiment_axis(tmp_path):
    config = load("experiments.yaml")
    base = job_counts(snakemake("-n", "--directory", tmp_path, "--configfile",
                                write(tmp_path, config, "a.yaml")).stdout)
    config["experiments"]["cifar10"]["seeds"] = [0, 7]
    r = snakemake("-n", "-p", "--directory", tmp_path, "--configfile", write(tmp_path, config, "b.yaml"))
    assert r.returncode == 0, r.stderr[-3000:]
    more = job_counts(r.stdout)
    diff = {k: more.get(k, 0) - base.get(k, 0) for k in set(base) | set(more)}
    # a second seed of cifar10 (standard, side, ε 2.5): three runs, one compression, two evaluations
    assert {k: v for k, v in diff.items() if v} == {"train": 3, "compress": 1}
    assert "cifar10-d110-epsilon-e2.5-s7" in r.stdout and "--seed 7" in r.stdout
    for bad, message in (([1, 1], "has non-unique elements"), ([-1], "less than the minimum of 0")):
        config["experiments"]["cifar10"]["seeds"] = bad
        r = snakemake("-n", "--directory", tmp_path, "--configfile", write(tmp_path, config, "c.yaml"))
        assert r.returncode != 0 and "experiments.cifar10.seeds" in r.stdout + r.stderr
        assert message in r.stdout + r.stderr


def test_a_killed_snakemakes_lock_is_removed_unless_one_still_runs(tmp_path):
    """What `make demo` does first (python -m eps_resnet.workflow.unlock): a Snakemake killed with
    kill -9 leaves its lock; it is removed when no Snakemake runs in the folder, kept otherwise."""
    import signal
    import sys
    import time

    config = tiny_config(tmp_path)
    cfg = write(tmp_path, config)
    target = os.path.join(config["data_dir"], "digits", "prepared.yaml")
    args = ["--snakefile", os.path.join(ROOT, "workflow", "Snakefile"), "--configfile", str(cfg)]
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
    proc = subprocess.Popen([os.path.join(BIN, "snakemake"), target, "--cores", "1", *args],
                            cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = tmp_path / ".snakemake" / "locks"
    deadline = time.time() + 120
    while time.time() < deadline and not (locks.is_dir() and os.listdir(locks)):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert os.listdir(locks), "the killed Snakemake left no lock"
    r = snakemake(target, "--cores", "1", "--configfile", cfg, cwd=tmp_path)
    assert r.returncode != 0 and "cannot be locked" in r.stdout + r.stderr
    unlock = [sys.executable, "-m", "eps_resnet.workflow.unlock", *args]
    # another Snakemake in this folder (a stand-in named so): its lock is not touched
    fake = tmp_path / "bin" / "snakemake"
    fake.parent.mkdir()
    fake.symlink_to("/bin/sleep")
    other = subprocess.Popen([str(fake), "60"], cwd=tmp_path)
    try:
        r = subprocess.run(unlock, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and f"(process {other.pid}) runs in" in r.stderr
        assert os.listdir(locks)
    finally:
        other.kill()
        other.wait()
    r = subprocess.run(unlock, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "removing the lock" in r.stderr, r.stderr
    r = snakemake(target, "--cores", "1", "--configfile", cfg, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]


def test_the_lock_stays_where_no_snakemake_can_be_seen_for_sure(tmp_path):
    """The unlock helper's decision on what it saw: another user's Snakemake whose working
    folder cannot be read, or a folder on a network file system (a Snakemake of another machine),
    keep the lock; so does a Snakemake in the folder; other processes do not."""
    from eps_resnet.workflow.unlock import file_system, processes, why_not

    here = str(tmp_path)
    others = [(11, ["/usr/bin/python3", "/usr/bin/vim"], here), (12, ["bash"], None)]
    assert why_not(here, others, "ext4") is None
    assert why_not(here, others + [(13, ["python", "-m", "snakemake"], "/elsewhere")], "xfs") is None
    assert why_not(here, others + [(14, ["/venv/bin/snakemake", "all"], here)], "ext4") == \
        f"a Snakemake (process 14) runs in {os.path.realpath(here)}"
    assert "process 15) runs whose working folder cannot be read" in \
        why_not(here, [(15, ["snakemake", "--cores", "2"], None)], "ext4")
    assert "shared file system (nfs4)" in why_not(here, others, "nfs4")
    # and what psutil sees here: this test's own folder, on a local file system, no Snakemake in it
    assert file_system(here) and why_not(here, processes(), file_system(here)) is None


def test_the_workflow_is_formatted_and_lint_clean(tmp_path):
    r = subprocess.run([os.path.join(BIN, "snakefmt"), "--check", os.path.join(ROOT, "workflow")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = snakemake("--lint", "--directory", tmp_path, "--configfile",
                  os.path.join(ROOT, "config", "demo.yaml"))
    out = r.stdout + r.stderr
    lints = set(re.findall(r"^    \* (.+?):?$", out, re.M))
    # The one lint left is Snakemake's advice to give every rule a conda environment: the
    # workflow runs in one environment with the package installed (README, "Stack"), since a
    # per-rule environment would have to install this very package from a copied env file.
    assert lints <= {"Specify a conda environment or container for each rule."}, out[-3000:]


def test_the_workflow_finds_the_machines_gpus_without_resources(tmp_path):
    config = load("experiments.yaml")
    config["datasets"]["imagenet"]["path"] = str(tmp_path / "ILSVRC2012")
    cfg = write(tmp_path, config)
    # a machine with two GPUs (the count gpu-run sees: EPS_RESNET_GPUS overrides the driver's)
    env = dict(os.environ, EPS_RESNET_GPUS="2", PATH=BIN + os.pathsep + os.environ["PATH"])
    env.pop("CUDA_VISIBLE_DEVICES", None)

    def run(*args):
        return subprocess.run([os.path.join(BIN, "snakemake"), "--snakefile",
                               os.path.join(ROOT, "workflow", "Snakefile"), *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    r = run("figures/imagenet-val-error.png", "-n", "--cores", "8", "--configfile", cfg)
    assert r.returncode != 0
    assert ("imagenet-d101-standard needs 4 GPUs but this machine has 2 (found by the workflow"
            in r.stdout + r.stderr)
    r = run("figures/cifar10-val-error.png", "-n", "--cores", "8", "--configfile", cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    env["CUDA_VISIBLE_DEVICES"] = "1,2,3,5"  # the user's own selection counts instead
    r = run("figures/imagenet-val-error.png", "-n", "--cores", "8", "--configfile", cfg)
    assert r.returncode == 0, r.stderr[-3000:]


def test_estimate_counts_what_remains(tmp_path):
    """One finished, one partial and one new run: only what remains is counted."""
    import json

    from eps_resnet.cli import main

    config = load("demo.yaml")
    config.update(results_dir=str(tmp_path / "results"), data_dir=str(tmp_path / "data"),
                  throughput=["14=100", "18=50"])
    config["experiments"]["digits_cifar"].update(variants=["standard"], epsilons=[8.0], seeds=[0])
    config["experiments"]["digits_cifar"].pop("title")
    cfg = write(tmp_path, config)
    runs = tmp_path / "results" / "runs" / "digits_cifar"
    (runs / "digits-d14-standard").mkdir(parents=True)
    (runs / "digits-d14-standard" / "train.done").write_text("")
    (runs / "digits-d14-epsilon-e8").mkdir()
    (runs / "digits-d14-epsilon-e8" / "stats.json").write_text(
        json.dumps([{"epoch_num": e, "global_step": 22 * e} for e in (1, 2, 3, 4)]))
    assert main(["estimate", "--config", str(cfg), "--out", str(tmp_path / "e.md")]) == 0
    text = (tmp_path / "e.md").read_text()
    # ε run: 18 - 4 = 14 epochs x 22 steps (1,433 // 64) x 64 images at 100 img/s
    rows = table_rows(text)
    assert ["digits_cifar", "digits-d14-epsilon-e8", "1", "14", "308", "19,712", "100", "0.1", "0.1"] in rows
    assert not [r for r in rows if r[1] == "digits-d14-standard"]  # finished
    # the ImageNet-family ResNet-18 runs (10 epochs x 15 steps x 32 images) at 50 img/s
    assert ["digits_imagenet", "digits-imagenet-d18-standard", "1", "10", "150", "4,800", "50", "0.0",
            "0.0"] in rows
    assert "3 run(s) to train, 0.00 M steps" in text
    r = snakemake(tmp_path / "results" / "estimate.md", "--cores", "1", "--directory", tmp_path,
                  "--configfile", cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "results" / "estimate.md").read_text() == text


def test_estimate_of_resnet152_on_the_originals_six_gpus(tmp_path, capsys):
    """The paper's ResNet-152 as the original ran it: 6 GPUs x 42 images; device-hours count
    every image once, the hours on its GPUs divide them by 6."""
    from eps_resnet.cli import main

    config = load("experiments.yaml")
    config.update(results_dir=str(tmp_path / "results"))
    assert main(["estimate", "imagenet152", "--config", str(write(tmp_path, config)),
                 "--throughput", "152=100"]) == 0
    # 110 epochs x 5,000 steps x 252 images at 100 img/s per GPU: 385 GPU-hours, 64.2 on six
    assert ["imagenet152", "imagenet-d152-epsilon-e1.8", "6", "110", "550,000", "138,600,000", "100",
            "385.0", "64.2"] in table_rows(capsys.readouterr().out)


def test_the_snakemake_internals_the_workflow_reads(tmp_path):
    """eps_resnet.workflow.snakemake_internals on a real Snakemake: each function answers what
    the command line said (fails when a Snakemake version moves one of them)."""
    import snakemake

    from eps_resnet.workflow import snakemake_internals

    assert snakemake.__version__.startswith(snakemake_internals.CHECKED_WITH + ".")
    (tmp_path / "Snakefile").write_text(
        "from eps_resnet.workflow.snakemake_internals import *\n"
        "rule a:\n    output: 'a'\n    shell: 'touch {output}'\n"
        "before = resource_limit(workflow, 'tpu')\n"
        "set_resource_limit(workflow, 'tpu', 3)\n"
        "print('seen', config_files_given(workflow), resource_limit(workflow, 'gpu'), before,\n"
        "      resource_limit(workflow, 'tpu'), runs_locally(workflow), makes_report(),\n"
        "      sorted(rule_names(workflow)))\n")
    (tmp_path / "c.yaml").write_text("x: 1\n")
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
    for args, seen in (([], "seen False None None 3 True False ['a']"),
                       (["--configfile", "c.yaml", "--resources", "gpu=2"],
                        "seen True 2 None 3 True False ['a']")):
        r = subprocess.run([os.path.join(BIN, "snakemake"), "-n", "--cores", "1", *args],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert seen in r.stdout.splitlines(), r.stdout[-2000:]
