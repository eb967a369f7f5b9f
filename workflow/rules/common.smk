# Helpers: config validation, the table of runs, and the input functions of the rules.
import os

from snakemake.utils import validate

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
PLOT_KINDS = ["val-error", "lr", "compression-ratio", "blocks"]


wildcard_constraints:
    experiment="[A-Za-z0-9_]+",
    run="[A-Za-z0-9_.+-]+",
    dataset="cifar10|cifar100|svhn|imagenet|digits",
    kind="|".join(PLOT_KINDS),


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
    return RUNS.get(wildcards.experiment, wildcards.run).train_args(DATA)


def train_gpus(wildcards):
    return RUNS.get(wildcards.experiment, wildcards.run).gpus


def run_dir(wildcards):
    return os.path.join(RESULTS, "runs", wildcards.experiment, wildcards.run)


def compressed_dir(wildcards):
    return os.path.join(run_dir(wildcards), "compressed")


def prepared_dir(wildcards):
    return os.path.join(DATA, wildcards.dataset)


def experiment_done_markers(wildcards):
    """The finished-training markers of every run of an experiment."""
    return [os.path.join(RESULTS, "runs", wildcards.experiment, r.name, "train.done")
            for r in RUNS.experiment(wildcards.experiment)]


def experiment_run_dirs(wildcards):
    return [os.path.join(RESULTS, "runs", wildcards.experiment, r.name)
            for r in RUNS.experiment(wildcards.experiment)]


def experiment_compressed(wildcards):
    return [os.path.join(RESULTS, "runs", wildcards.experiment, r.name, "compressed", "eval.json")
            for r in RUNS.experiment(wildcards.experiment) if r.variant == "epsilon"]


def expected_runs(wildcards):
    return " ".join(r.name for r in RUNS.experiment(wildcards.experiment))


def all_parsed(wildcards):
    return [os.path.join(RESULTS, e, "runs.csv") for e in RUNS.available_experiments()]


def all_compressed(wildcards):
    return [os.path.join(RESULTS, "runs", e, r.name, "compressed", "eval.json")
            for e in RUNS.available_experiments() for r in RUNS.experiment(e)
            if r.variant == "epsilon"]


def all_full_evals(wildcards):
    return [os.path.join(RESULTS, "runs", e, r.name, "eval.json")
            for e in RUNS.available_experiments() for r in RUNS.experiment(e)
            if r.variant == "epsilon"]
