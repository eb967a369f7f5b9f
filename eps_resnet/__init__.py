"""ε-ResNet (Yu, Yu & Ramalingam, CVPR 2018) on tensorpack, laid out as the pipeline it is.

One subpackage per stage; a stage imports only the stages above it in this list (and the base
modules ``compat``, ``errors`` and ``atomic``, which import nothing of the package but each other):

    data/      datasets: what each one is, preparing it on disk, the ordered dataflows
    models/    the networks: block layouts, the gate, the tensorpack model
    training/  a run: recipe, settings, schedules, devices, the trainer, and the run folder it writes
    runs/      what is done with a trained run folder: evaluate, compress, export, compare
    results/   run folders to tables and figures: parse, plots, summary, estimate
    workflow/  the Snakemake workflow's helpers: its config, GPU slots, the machine self-check
    cli/       the ``eps-resnet`` command line, a module per stage
"""
from . import compat  # noqa: F401  (must run before anything imports TensorFlow)
from . import logs  # noqa: F401  (the package logger's NullHandler and NOTE level)

__version__ = "0.1.0"
