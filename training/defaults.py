"""Defaults shared by library functions and the option models that describe them.

Importable without torch or pydantic (the GPU benchmark imports inference alone).
"""

#: Tile overlap blended, in pixels (:func:`training.tiling.stain_field`, ``scope stain``).
DEFAULT_BLEND = 16
