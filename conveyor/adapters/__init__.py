"""The only modules that talk to the outside: Kubernetes, OCI registries, git, Prefect's REST API.

Each wraps one client library (or protocol), maps its failures to Conveyor's error tree in one
place, and is the only module allowed to import that library (import-linter keeps it so).
"""
