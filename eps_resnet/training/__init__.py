"""Training: what a run is (recipe, settings, schedules, devices), how it trains (train, callbacks,
kernels, throughput) and the run folder it writes and reads back (runfolder, runlog, provenance).

May import data/, models/ and the base modules; nothing from runs/, results/, workflow/ or cli/.
"""
