"""What the workflow needs from Snakemake that its documentation does not promise, in one place.

Everything else the Snakefile uses is documented: rules, ``config``, ``workflow.basedir``,
``snakemake.utils.validate``, ``min_version``. These five are read from the ``workflow`` object
(or the command line) because Snakemake offers no documented way to ask:

- whether ``--configfile`` was given (the paper's config is the default only without one;
  ``configfile:`` would otherwise merge the two files' experiments);
- the ``--resources gpu=N`` limit, and setting it to the GPUs found when none was given;
- whether the jobs run on this machine (not through an executor plugin such as SLURM);
- whether this run makes the ``--report``;
- the names of the rules defined so far.

Checked against Snakemake 9.27 (:data:`CHECKED_WITH`); ``tests/test_workflow.py::
test_the_snakemake_internals_the_workflow_reads`` runs a real Snakemake on a small Snakefile
that calls each of these and fails if one changes.
"""
from __future__ import annotations

import sys

CHECKED_WITH = "9.27"


def config_files_given(workflow) -> bool:
    """Whether the command line gave ``--configfile``."""
    return bool(workflow.overwrite_configfiles)


def resource_limit(workflow, name: str) -> int | None:
    """The ``--resources NAME=N`` of this run (None: not limited)."""
    cap = workflow.global_resources.get(name)
    return getattr(cap, "value", cap)


def set_resource_limit(workflow, name: str, value: int) -> None:
    """Limit ``name`` to ``value`` as ``--resources NAME=value`` would."""
    workflow.register_resource(name, value)


def runs_locally(workflow) -> bool:
    """Whether jobs run on this machine (no executor plugin such as SLURM)."""
    return bool(workflow.local_exec)


def makes_report(argv: list[str] | None = None) -> bool:
    """Whether this Snakemake run makes the HTML report (``--report``)."""
    return any(a == "--report" or a.startswith("--report=")
               for a in (sys.argv if argv is None else argv))


def rule_names(workflow) -> set[str]:
    """The names of the rules defined so far."""
    return {r.name for r in workflow.rules}
