"""serd: real-time speech emotion recognition daemon."""

__version__ = "0.1.0"
__license__ = "MIT"  # the code's; each shipped model states its own in its card
