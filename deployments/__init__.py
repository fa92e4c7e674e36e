"""Prefect deployments of the genreflow flow: `python -m deployments.nightly` registers nightly retraining."""
