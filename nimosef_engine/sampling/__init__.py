"""Sampling the fitted fields on grids and points; memory plan; tables."""
