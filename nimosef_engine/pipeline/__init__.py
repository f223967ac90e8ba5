"""Segment & Track and resample: the jobs as sequences of stage calls."""
