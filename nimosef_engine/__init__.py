"""NIMOSEF engine: neural implicit motion and segmentation functions for cardiac cine MRI.

Research software trained on research data. It is not a medical device and must not be
used for diagnosis or treatment decisions.
"""

__version__ = "0.1.0"

LABEL_NAMES = {0: "background", 1: "LV", 2: "MYO", 3: "RV"}
"""NIMOSEF label order: 1 LV blood pool, 2 LV myocardium, 3 RV blood pool."""
