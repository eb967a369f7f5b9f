# Helpers: config validation, the table of runs, and the input functions of the rules. Names of
# datasets, figures and run-folder files come from the eps_resnet package.
import os
import sys

from eps_resnet.data import PREPARABLE
from eps_resnet.gpus import machine_gpus, visible_pool
from eps_resnet.plots import KINDS as PLOT_KINDS
from eps_resnet.runfolder import (
    COMPRESSED_DIR,
    COMPRESSED_FILE,
    DONE_FILE,
    EVAL_FILE,
    run_path,
)
from eps_resnet.workflow import RunTable, WorkflowConfigError, validate_config

# One line naming the key for a config that is wrong (snakemake.utils.validate would print the
# whole schema); the schema's defaults are filled in.
try:
    validate_config(
        config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml")
    )
    RUNS = RunTable(config)
except WorkflowConfigError as e:
    raise WorkflowError(str(e))

DATA = config["data_dir"]
RESULTS = config["results_dir"]
FIGURES = config["figures_dir"]
LOGS = os.path.join(RESULTS, "logs")


wildcard_constraints:
    experiment="[A-Za-z0-9_]+",
    run="[A-Za-z0-9_.+-]+",
    dataset="|".join(PREPARABLE),
    kind="|".join(PLOT_KINDS),


def in_run(*parts, experiment="{experiment}", run="{run}"):
    """A path in a run folder: the rules' pattern by default, one run's path when given."""
    return run_path(RESULTS, experiment, run, *parts)


def in_runs(experiments, *parts, variant=None):
    """That path in every run of the experiments (of one variant, if given)."""
    return [
        in_run(*parts, experiment=e, run=r.name)
        for e in experiments
        for r in RUNS.experiment(e)
        if variant is None or r.variant == variant
    ]


def all_targets(wildcards):
    """Figures of every experiment whose dataset can be had, and the summary; experiments left
    out for lack of a dataset path are named once."""
    available = RUNS.available_experiments()
    left_out = [e for e in RUNS.runs if e not in available]
    if not available:
        raise WorkflowError(
            f"no experiment can run: {', '.join(left_out)} need(s) datasets.imagenet.path "
            "in the config (the extracted ILSVRC-2012 folder)"
        )
    if left_out:
        print(
            f"Note: `all` leaves out {', '.join(left_out)}: set datasets.imagenet.path in the "
            "config to include it",
            file=sys.stderr,
        )
    targets = [os.path.join(RESULTS, "summary.csv")]
    for exp in available:
        targets += [os.path.join(FIGURES, f"{exp}-{kind}.png") for kind in PLOT_KINDS]
        targets.append(os.path.join(RESULTS, exp, "settings.html"))  # for the report
    return targets


def gpu_cap():
    """The --resources gpu=N of this Snakemake run (None: not limited)."""
    cap = workflow.global_resources.get("gpu")
    return getattr(cap, "value", cap)


# Running locally without --resources gpu=N: the GPUs this machine has (those of an existing
# CUDA_VISIBLE_DEVICES, else the driver's) limit the training jobs that run at once, as
# --resources gpu=N would. A cluster's scheduler counts them itself.
GPUS_FOUND = None
if workflow.local_exec and gpu_cap() is None:
    GPUS_FOUND = len(visible_pool()) if visible_pool() is not None else machine_gpus()
    if GPUS_FOUND:
        workflow.register_resource("gpu", GPUS_FOUND)


def prepared(wildcards):
    """The prepared-dataset marker a training run needs. Fails at once, naming the config key,
    for a dataset that has no path configured, and for a run that asks for more GPUs than
    --resources gpu=N allows (Snakemake would quietly give it fewer, changing its per-GPU batch).
    """
    run = RUNS.get(wildcards.experiment, wildcards.run)
    cap = gpu_cap()
    if cap is not None and run.gpus > int(cap):
        where = (
            f"this machine has {cap} (found by the workflow; --resources gpu=N overrides); "
            if GPUS_FOUND
            else f"--resources gpu={cap} allows {cap}; raise gpu= or "
        )
        raise WorkflowError(
            f"experiments.{run.experiment}.gpus: {run.name} needs {run.gpus} GPUs but "
            f"{where}lower the experiment's gpus"
        )
    return os.path.join(DATA, RUNS.require_dataset(run.dataset), "prepared.yaml")


def prepare_flags(wildcards):
    return RUNS.prepare_flags(wildcards.dataset)


def train_args(wildcards):
    return RUNS.get(wildcards.experiment, wildcards.run).train_args()


def train_gpus(wildcards):
    return RUNS.get(wildcards.experiment, wildcards.run).gpus


def run_dir(wildcards):
    return in_run(experiment=wildcards.experiment, run=wildcards.run)


def compressed_dir(wildcards):
    return in_run(COMPRESSED_DIR, experiment=wildcards.experiment, run=wildcards.run)


def prepared_dir(wildcards):
    return os.path.join(DATA, wildcards.dataset)


def experiment_done_markers(wildcards):
    """The finished-training markers of every run of an experiment."""
    return in_runs([wildcards.experiment], DONE_FILE)


def experiment_run_dirs(wildcards):
    return in_runs([wildcards.experiment])


def figure_title(wildcards):
    return config["experiments"][wildcards.experiment].get(
        "title", wildcards.experiment
    )


def expected_runs(wildcards):
    return " ".join(r.name for r in RUNS.experiment(wildcards.experiment))


def all_parsed(wildcards):
    return [os.path.join(RESULTS, e, "runs.csv") for e in RUNS.available_experiments()]


def all_compressed(wildcards):
    return in_runs(
        RUNS.available_experiments(), COMPRESSED_DIR, EVAL_FILE, variant="epsilon"
    )


def all_full_evals(wildcards):
    return in_runs(RUNS.available_experiments(), EVAL_FILE, variant="epsilon")
