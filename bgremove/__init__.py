"""bgremove: remove image backgrounds in bulk, offline or through the Background Removal API."""

__version__ = "0.1.0"
