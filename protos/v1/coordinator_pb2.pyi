from accord.protos.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("query", "require_all")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_ALL_FIELD_NUMBER: _ClassVar[int]
    query: _common_pb2.SignedQuery
    require_all: bool
    def __init__(self, query: _Optional[_Union[_common_pb2.SignedQuery, _Mapping]] = ..., require_all: _Optional[bool] = ...) -> None: ...

class MissingNode(_message.Message):
    __slots__ = ("node", "reason")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node: str
    reason: str
    def __init__(self, node: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FederatedRelease(_message.Message):
    __slots__ = ("query_id", "dataset", "columns", "rows", "epsilon", "contributing_nodes", "missing", "partial", "agreement", "min_group_size", "suppress_below", "aggregation", "delta", "shares")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTING_NODES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESS_BELOW_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    dataset: str
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReleaseColumn]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReleaseRow]
    epsilon: str
    contributing_nodes: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.RepeatedCompositeFieldContainer[MissingNode]
    partial: bool
    agreement: str
    min_group_size: int
    suppress_below: int
    aggregation: str
    delta: str
    shares: _containers.RepeatedCompositeFieldContainer[_common_pb2.SecureShare]
    def __init__(self, query_id: _Optional[str] = ..., dataset: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[_common_pb2.ReleaseColumn, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[_common_pb2.ReleaseRow, _Mapping]]] = ..., epsilon: _Optional[str] = ..., contributing_nodes: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[_Union[MissingNode, _Mapping]]] = ..., partial: _Optional[bool] = ..., agreement: _Optional[str] = ..., min_group_size: _Optional[int] = ..., suppress_below: _Optional[int] = ..., aggregation: _Optional[str] = ..., delta: _Optional[str] = ..., shares: _Optional[_Iterable[_Union[_common_pb2.SecureShare, _Mapping]]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("name", "reachable", "error", "datasets")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    reachable: bool
    error: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., reachable: _Optional[bool] = ..., error: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ...) -> None: ...

class FederatedCatalogRequest(_message.Message):
    __slots__ = ("agreement",)
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    agreement: str
    def __init__(self, agreement: _Optional[str] = ...) -> None: ...

class FederatedExplainRequest(_message.Message):
    __slots__ = ("query", "target_half_width")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TARGET_HALF_WIDTH_FIELD_NUMBER: _ClassVar[int]
    query: _common_pb2.SignedQuery
    target_half_width: float
    def __init__(self, query: _Optional[_Union[_common_pb2.SignedQuery, _Mapping]] = ..., target_half_width: _Optional[float] = ...) -> None: ...

class FederatedExplanation(_message.Message):
    __slots__ = ("query_id", "dataset", "nodes", "refused", "combined")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    COMBINED_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    dataset: str
    nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeExplanation]
    refused: _containers.RepeatedCompositeFieldContainer[MissingNode]
    combined: _containers.RepeatedCompositeFieldContainer[_common_pb2.AggregatePreview]
    def __init__(self, query_id: _Optional[str] = ..., dataset: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[_common_pb2.NodeExplanation, _Mapping]]] = ..., refused: _Optional[_Iterable[_Union[MissingNode, _Mapping]]] = ..., combined: _Optional[_Iterable[_Union[_common_pb2.AggregatePreview, _Mapping]]] = ...) -> None: ...

class FederatedBudgetRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: _common_pb2.SignedQuery
    def __init__(self, request: _Optional[_Union[_common_pb2.SignedQuery, _Mapping]] = ...) -> None: ...

class FederatedBudget(_message.Message):
    __slots__ = ("nodes", "unreachable")
    NODES_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeBudget]
    unreachable: _containers.RepeatedCompositeFieldContainer[MissingNode]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_common_pb2.NodeBudget, _Mapping]]] = ..., unreachable: _Optional[_Iterable[_Union[MissingNode, _Mapping]]] = ...) -> None: ...

class FederatedDataset(_message.Message):
    __slots__ = ("schema", "nodes")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    schema: _common_pb2.DatasetSchema
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, schema: _Optional[_Union[_common_pb2.DatasetSchema, _Mapping]] = ..., nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class FederatedCatalogResponse(_message.Message):
    __slots__ = ("datasets", "unreachable")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[FederatedDataset]
    unreachable: _containers.RepeatedCompositeFieldContainer[MissingNode]
    def __init__(self, datasets: _Optional[_Iterable[_Union[FederatedDataset, _Mapping]]] = ..., unreachable: _Optional[_Iterable[_Union[MissingNode, _Mapping]]] = ...) -> None: ...
