"""The Snakemake workflow's helpers: its config and the runs it implies (config), GPU slots for
local jobs (gpus), and the machine check before a cluster is committed (selfcheck).

May import every stage below it (data/ to results/); the Snakefile imports from here and from
the stages, never the other way round.
"""
