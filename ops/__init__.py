"""Operator tools: the cluster launcher, Prometheus metrics, the traffic report of the logs."""
