"""The package's version: what exports and reports record as the code that wrote them."""

__version__ = "0.1.0"
