# Helpers: config validation, the table of runs, and the input functions of the rules. Names of
# datasets, figures and run-folder files come from the eps_resnet package.
import os

from snakemake.utils import validate

from eps_resnet.data import PREPARABLE
from eps_resnet.plots import KINDS as PLOT_KINDS
from eps_resnet.runfolder import (
    COMPRESSED_DIR,
    COMPRESSED_FILE,
    DONE_FILE,
    EVAL_FILE,
    run_path,
)
from eps_resnet.workflow import RunTable, WorkflowConfigError

validate(config, schema="../schemas/config.schema.yaml")

try:
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


def all_targets():
    """Figures of every experiment whose dataset can be had, and the summary."""
    targets = [os.path.join(RESULTS, "summary.csv")]
    for exp in RUNS.available_experiments():
        targets += [os.path.join(FIGURES, f"{exp}-{kind}.png") for kind in PLOT_KINDS]
    return targets


def prepared(wildcards):
    """The prepared-dataset marker a training run needs (fails at once, naming the config key,
    for a dataset that has no path configured)."""
    run = RUNS.get(wildcards.experiment, wildcards.run)
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
