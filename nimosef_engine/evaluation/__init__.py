"""Metrics, plots and the scoring of whole datasets."""
