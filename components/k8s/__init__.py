"""Kubernetes concerns shared by the launchers, deploy and the checks: names (DNS-1123 names
and label values), pools (the node-pool catalog: GPU memory classes and node affinity), quotas
(the Kueue objects rendered from that catalog).
"""
