"""Operator tools: the cluster launcher, the local Redis Cluster, the process runner, the log report, status."""
