"""Markdown tables, written by tabulate (what ``DataFrame.to_markdown`` uses): GitHub's pipe
format, cells exactly as the caller formatted them (no re-parsing of "6.30 ± 1.00" or "1,500").

A base module: it imports nothing of the package.
"""
from __future__ import annotations

#: tabulate's options for every table of the package (``DataFrame.to_markdown(**MARKDOWN)``).
MARKDOWN = {"tablefmt": "github", "disable_numparse": True}


def markdown_table(rows, headers) -> str:
    """A Markdown table of ``rows`` (sequences of cells) under ``headers``, ending in a newline."""
    from tabulate import tabulate

    return tabulate([["" if c is None else c for c in row] for row in rows], headers=list(headers),
                    **MARKDOWN) + "\n"
