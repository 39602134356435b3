"""Small pieces every part of the core uses: digests, on-disk places, strict YAML."""
