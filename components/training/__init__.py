"""What runs inside training processes: the process group, checkpoints, the trainer, the worker.

Nothing here imports kfp or the kubernetes client; torch and ultralytics are imported inside
functions, after the environment is settled (ultralytics reads RANK at import).
"""
