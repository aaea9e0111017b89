"""Integrations with tracking servers we do not own: MLflow and the Kubeflow Trainer's status
endpoint. Each is one small adapter, imported lazily, off unless its environment variables are
set, bounded in time, and never the reason a training fails.
"""
