"""recipes: the YAML recipe schema and engine, the ``textbooks`` CLI and the bundled recipes.

The top layer: it may import every other layer.
"""
