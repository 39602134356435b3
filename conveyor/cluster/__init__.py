"""Work on a cluster: order, apply and prune, wait for readiness, detect drift, run gates."""
