"""One-off investigations: each answers one question the docs quote (README.md in this folder)."""
