"""The test-time fit of a subject's code and pose with the prior frozen."""
