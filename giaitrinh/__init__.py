"""GiảiTrình: requests for explanation, from submission to published answer."""

__version__ = "0.1.0"
