"""One digest on one target, from bundle to cluster: where bundles and cluster work meet."""
