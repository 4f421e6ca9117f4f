"""hpo package."""
