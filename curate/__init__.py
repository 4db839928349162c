"""curate: build the training corpora of the paper's data regimes on Ray, measure them, train on them.

Every part imports under this one name, so a user's own `trainer.py` or `jobs.py` in the folder
where `curate` runs (Ray puts that folder first on its workers' `sys.path`) cannot shadow it.
"""
