"""Results: run folders to one tidy table (parse), the paper's figures (plots), the reproduction
table against the paper's numbers (summary), and the training a target still needs (estimate).

May import training/ (the run folder), models/, data/ and the base modules; not runs/, workflow/
or cli/ (the results read what runs/ wrote through the file names of training.runfolder).
"""

#: Figures of one experiment, and figures of a dataset's grid (several experiments' final values);
#: here, apart from the plotting code, so that the command line and the workflow list them
#: without importing matplotlib.
KINDS = ("val-error", "lr", "compression-ratio", "blocks")
GRID_KINDS = ("depth", "epsilon")
