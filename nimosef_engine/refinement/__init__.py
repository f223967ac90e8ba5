"""Labels refined by the image: intensity model, slice network, clean-up."""
