"""Chapter-level helpers: the runs and measures behind each chapter's notebooks."""
