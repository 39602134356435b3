"""Bundles: a source folder checked, linted, packed reproducibly, pushed once, rendered."""
