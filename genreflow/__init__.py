"""genreflow: train and compare music-genre classifiers as a reproducible Prefect workflow."""

__version__ = "0.1.0"
