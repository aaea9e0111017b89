"""Hyperparameter search before the long run: the search space (space), what a trial costs
(budget), Optuna trials run here through the local launcher (local), a Katib Experiment of
TrainJob trials on a cluster (katib, experiment) and the search report (report).

Nothing here imports kfp; the kubernetes client and optuna are imported only where used.
"""
