"""The record of the path (desired state and evidence in git) and the policy read from it."""
