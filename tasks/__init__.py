"""Thin Prefect tasks over the core: verb_object names, one side effect each.

Tasks hold no logic of their own; they give the core's steps a name, logs, retries where a retry
is safe, and a place in the Prefect UI. They take what they use (a state repository, a bundle
store, a cluster connection and the configured target), which the flows take from their run
context (conveyor.promotion.context: connections are opened there, once per process).
"""
