"""flows layer (see README: Layers)."""
