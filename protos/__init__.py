"""The wire contract: ``v1/*.proto``, the generated code, pb2 ⇄ model conversion, the rich-status
mapping and the code generator.
"""

__all__: list[str] = []
