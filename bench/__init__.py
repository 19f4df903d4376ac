"""Accord's benchmark programs (``make bench``, ``make bench-quick``); not part of the distribution."""
