"""Results: run folders to one tidy table (parse), the paper's figures (plots), the reproduction
table against the paper's numbers (summary), and the training a target still needs (estimate).

May import training/ (the run folder), models/, data/ and the base modules; not runs/, workflow/
or cli/ (the results read what runs/ wrote through the file names of training.runfolder).
"""
