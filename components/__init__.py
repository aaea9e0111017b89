"""kfp_yolo.components: what runs inside KFP steps and training pods.

Importing it does nothing: each step body installs its boundary explicitly
(components/boundary.install, the first line of every step in components/steps/).
"""
