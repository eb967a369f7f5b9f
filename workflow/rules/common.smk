# Helpers: config validation, the table of runs, and the input functions of the rules. Names of
# datasets, figures and run-folder files come from the eps_resnet package.
import os
import sys

from eps_resnet.data import DATASETS, preparable
from eps_resnet.results.captions import figure_caption, grid_caption
from eps_resnet.results import GRID_KINDS
from eps_resnet.results import KINDS as PLOT_KINDS
from eps_resnet.training.runfolder import (
    COMPRESSED_DIR,
    COMPRESSED_FILE,
    DONE_FILE,
    EVAL_FILE,
    run_path,
)
from eps_resnet.workflow.config import RunTable, WorkflowConfigError, validate_config
from eps_resnet.workflow.gpus import machine_gpus, visible_pool
from eps_resnet.workflow.snakemake_internals import (
    makes_report,
    resource_limit,
    runs_locally,
    set_resource_limit,
)

# snakemake.utils.validate, with one line naming the key for a config that is wrong (its own
# message prints the whole schema); the schema's defaults are filled in.
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
PAPER = "paper"  # results/paper/, figures/paper/: the whole grid's summary and figures

# `--report` collects results: before the workflow has made them, say what to run first (the
# report would stop on the first missing file, with a traceback).
if makes_report() and not os.path.exists(os.path.join(RESULTS, "summary.csv")):
    print(
        f"Error: --report collects the workflow's results, and {RESULTS} has none yet "
        "(no summary.csv): run the workflow first (the same command without --report; "
        "`make demo` for the demo), then --report",
        file=sys.stderr,
    )
    raise SystemExit(1)


wildcard_constraints:
    experiment="[A-Za-z0-9_]+",
    run="[A-Za-z0-9_.+-]+",
    dataset="|".join(preparable()),
    kind="|".join(PLOT_KINDS),
    grid_kind="|".join(GRID_KINDS),


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


def stop(message):
    """End the workflow with one line, while the DAG is built (an input function's exception
    would come with Snakemake's traceback): nothing has run yet."""
    print(f"Error: {message}", file=sys.stderr)
    raise SystemExit(1)


def available(target, experiments):
    """The experiments whose dataset can be had; those left out for lack of a dataset path are
    named once, and a target left with none fails naming the config key."""
    kept = [e for e in experiments if e in RUNS.available_experiments()]
    left_out = [e for e in experiments if e not in kept]
    if not kept:
        stop(
            f"`{target}`: no experiment can run: {', '.join(left_out)} need(s) "
            "datasets.imagenet.path in the config (the extracted ILSVRC-2012 folder)"
        )
    if left_out:
        print(
            f"Note: `{target}` leaves out {', '.join(left_out)}: set datasets.imagenet.path in "
            "the config to include it",
            file=sys.stderr,
        )
    return kept


def experiment_targets(experiments):
    """Each experiment's figures, and its pages of settings and of figures with captions (for
    the report)."""
    targets = []
    for exp in experiments:
        targets += [os.path.join(FIGURES, f"{exp}-{kind}.png") for kind in PLOT_KINDS]
        targets += [
            os.path.join(RESULTS, exp, page)
            for page in ("settings.html", "figures.html")
        ]
    return targets


def all_targets(wildcards):
    """The seed's figures: every experiment of the group main, and the summary."""
    experiments = available("all", RUNS.all_experiments())
    return [os.path.join(RESULTS, "summary.csv")] + experiment_targets(experiments)


def group_targets(group):
    """The input function of the target named after an experiment group."""
    return lambda wildcards: experiment_targets(available(group, RUNS.groups()[group]))


def grid_figure_path(dataset, kind):
    return os.path.join(FIGURES, PAPER, f"{dataset}-{kind}.png")


def paper_targets(wildcards):
    """The whole grid: every experiment's figures, the figures across experiments of each
    dataset (against depth and ε) and the summary of them all."""
    experiments = available("paper", list(RUNS.runs))
    return (
        [os.path.join(RESULTS, PAPER, "summary.csv")]
        + experiment_targets(experiments)
        + [grid_figure_path(d, k) for d, k, _ in RUNS.grid_figures(experiments)]
    )


def gpu_cap():
    """The --resources gpu=N of this Snakemake run (None: not limited)."""
    return resource_limit(workflow, "gpu")


# Running locally without --resources gpu=N: the GPUs this machine has (those of an existing
# CUDA_VISIBLE_DEVICES, else the driver's) limit the training jobs that run at once, as
# --resources gpu=N would. A cluster's scheduler counts them itself.
GPUS_FOUND = None
if runs_locally(workflow) and gpu_cap() is None:
    POOL = visible_pool()
    GPUS_FOUND = len(POOL) if POOL is not None else machine_gpus()
    if GPUS_FOUND:
        set_resource_limit(workflow, "gpu", GPUS_FOUND)


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
        stop(
            f"experiments.{run.experiment}.gpus: {run.name} needs {run.gpus} GPUs but "
            f"{where}lower the experiment's gpus"
        )
    try:
        return os.path.join(DATA, RUNS.require_dataset(run.dataset), "prepared.yaml")
    except WorkflowConfigError as e:
        stop(f"{run.name}: {e}")


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


def parsed(experiments):
    return [os.path.join(RESULTS, e, "runs.csv") for e in experiments]


def compressed_evals(experiments):
    return in_runs(experiments, COMPRESSED_DIR, EVAL_FILE, variant="epsilon")


def full_evals(experiments):
    return in_runs(experiments, EVAL_FILE, variant="epsilon")


def summary_inputs(scope):
    """The summary's inputs: the group main's experiments (`all`), or every one (`paper`)."""

    def inputs(wildcards):
        experiments = [
            e
            for e in (list(RUNS.runs) if scope == PAPER else RUNS.all_experiments())
            if e in RUNS.available_experiments()
        ]
        return {
            "parsed": parsed(experiments),
            "compressed": compressed_evals(experiments),
            "full": full_evals(experiments),
        }

    return inputs


def grid_inputs(wildcards):
    """The parsed runs of the experiments a grid figure draws."""
    return parsed(grid_experiments(wildcards))


def grid_experiments(wildcards):
    for dataset, kind, experiments in RUNS.grid_figures(RUNS.available_experiments()):
        if (dataset, kind) == (wildcards.dataset, wildcards.grid_kind):
            return experiments
    raise WorkflowError(
        f"{grid_figure_path(wildcards.dataset, wildcards.grid_kind)}: the config's experiments "
        f"of {wildcards.dataset} have no {wildcards.grid_kind} grid (it needs two depths, or two "
        "ε at one depth)"
    )


def grid_expected(wildcards):
    return " ".join(
        r.name for e in grid_experiments(wildcards) for r in RUNS.experiment(e)
    )


def grid_title(wildcards):
    name = DATASETS[wildcards.dataset].description
    name = name if len(name) <= 24 else wildcards.dataset
    return f"{name}: final values against {'depth' if wildcards.grid_kind == 'depth' else 'ε'}"
