"""Shared ground: errors, atomic writes, progress, device, geometry, safe loading."""
