"""cartfs package."""
