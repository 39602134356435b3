"""tasks layer (see README: Layers)."""
