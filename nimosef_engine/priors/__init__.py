"""The bundled population prior(s) and their model card."""
