"""Dataset layouts (BIDS-like, ACDC), preprocessing, manifests, splits, torch datasets."""
