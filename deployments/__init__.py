"""Prefect deployments of the genreflow flow: `python -m genreflow.deployments.nightly` registers nightly retraining."""
