"""Thin Prefect tasks over the core: verb_object names, one side effect each.

Tasks hold no logic of their own; they give the core's steps a name, logs, retries where a retry
is safe, and a place in the Prefect UI. Cluster connections are opened once per process and
cluster (discovery is cached with them).
"""
