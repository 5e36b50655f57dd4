"""OncoFed shared core: config, data, models, training loop, metrics, run store.

``common`` never imports ``client`` or ``server``.
"""

__version__ = "0.1.0"
