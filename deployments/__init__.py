"""deployments layer (see README: Layers)."""
