"""Training: the population prior, the slice network, their augmentation."""
