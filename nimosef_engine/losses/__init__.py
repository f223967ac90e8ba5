"""NIMOSEF losses, one family per module; :mod:`objective` combines them for train and fit."""
