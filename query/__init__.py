"""The query language: the query model, dataset schemas, the SQL subset, epsilon and release values.

Both sides use it; it imports nothing of Accord's but the error tree.
"""

__all__: list[str] = []
