"""Conveyor's core: everything a promotion does, usable without an orchestrator.

The folders are the map. Four activities sit on one layer of adapters, and imports point down
only (import-linter checks it, see pyproject.toml):

    cli/         the `conveyor` command; reaches Prefect only through its REST API or a child
                 process running a flow
    platform/    the local platform: Kubernetes (KWOK), a registry and Prefect on 127.0.0.1
    promotion/   one digest on one target: render a pulled bundle, apply, wait, soak; reports
    records/     desired state and evidence in git (state), and what they allow (policy)
    config/      the configuration: frozen values (model) and the strict file reader (reader)
    bundles/     source folders, schema, parameters, render, lint, compare, packing, build
    cluster/     apply order, server-side apply and prune, readiness, waiting, drift, gates
    adapters/    the only code that talks to the outside: kube, oci, gitrepo, prefect_api
    kit/         digests, on-disk places, strict YAML and its field reader, shared syntax
    errors.py    the one error tree, each error with its exit code

`bundles` and `cluster` know nothing of each other; `promotion` is where they meet. Only
`adapters` import the kubernetes client, oras or GitPython, and nothing here imports Prefect.
"""
