"""Small pieces every part of the core uses: digests, on-disk places, strict YAML, the strict
field reader of files, the shared syntax of names, times, URLs and registries, progress lines."""
