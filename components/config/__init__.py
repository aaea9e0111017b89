"""The run's one typed config, below the steps that check it and the CLI that reads it.

run_config (RunConfig, the pipeline's parameters), file (the config file and --set), values
(the value rules), serving_keys, checks (what the validate step runs on the parameters).
"""
