"""What the tests and the benchmarks share: one harness, imported by both.

- `git`: git commands with an identity of their own, so no machine's git configuration matters.
- `prefect`: Prefect's REST API through the core's client, plus the raw records tests read.
- `world`: an isolated app, configuration and state repository on the local platform, driven the
  way users drive Conveyor (end-to-end tests, the release benchmark).
- `manifests`: Kubernetes objects the cluster tests and the cluster benchmark apply.

The benchmarks run as scripts (`python benchmarks/bench_release.py`); they put the repository
root on `sys.path` to import this package, as `python -m pytest` does for the tests.
"""
