"""Generated protobuf and gRPC code of package ``accord.v1`` (never edited by hand: ``make protos``)."""

__all__: list[str] = []
