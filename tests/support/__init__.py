"""Helpers that start real servers for tests: Prefect, an S3-compatible store (moto) and a Dask cluster."""
