"""The RPC runtime both servers and all clients share: mutual-TLS channels and servers, the caller's
identity from the TLS context, limits, health, and server timings.
"""

__all__: list[str] = []
