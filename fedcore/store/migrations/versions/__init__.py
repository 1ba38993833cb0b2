"""Migration scripts, one per schema revision, applied in order of their down_revision links."""
