"""The coordinator (fan-out to the nodes, combination, its server) and the analyst's client and
command line.
"""

__all__: list[str] = []
