"""Reading cines and writing outputs."""
