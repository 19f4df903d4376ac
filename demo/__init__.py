"""``accord demo``: a synthetic county and two districts, written to disk and served as a real
federation on this machine.
"""

__all__: list[str] = []
