"""An authority's node: config, the answer pipeline, durable state, execution backends (DuckDB),
differential privacy (the only user of OpenDP), and the gRPC server.
"""

__all__: list[str] = []
