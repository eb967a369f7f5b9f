"""The one base class of the errors a user can fix.

Every module raises its own subclass (bad flags, a damaged dataset, a run folder that cannot be
compressed, ...); ``eps-resnet`` prints any of them as one line naming the input and exits 2,
and the workflow turns them into Snakemake errors. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class EpsResnetError(Exception):
    """Bad input or state that the user can fix; the message is one line naming the input."""
