from accord.protos.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SecureJoinRequest(_message.Message):
    __slots__ = ("query", "participants")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    query: _common_pb2.SignedQuery
    participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query: _Optional[_Union[_common_pb2.SignedQuery, _Mapping]] = ..., participants: _Optional[_Iterable[str]] = ...) -> None: ...

class SecureKeyShare(_message.Message):
    __slots__ = ("node", "query_id", "payload_digest", "participants", "public_key", "certificate", "signature")
    NODE_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    node: str
    query_id: str
    payload_digest: bytes
    participants: _containers.RepeatedScalarFieldContainer[str]
    public_key: bytes
    certificate: bytes
    signature: bytes
    def __init__(self, node: _Optional[str] = ..., query_id: _Optional[str] = ..., payload_digest: _Optional[bytes] = ..., participants: _Optional[_Iterable[str]] = ..., public_key: _Optional[bytes] = ..., certificate: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class SecureAnswerRequest(_message.Message):
    __slots__ = ("query", "keys")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    query: _common_pb2.SignedQuery
    keys: _containers.RepeatedCompositeFieldContainer[SecureKeyShare]
    def __init__(self, query: _Optional[_Union[_common_pb2.SignedQuery, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[SecureKeyShare, _Mapping]]] = ...) -> None: ...

class AnswerRequest(_message.Message):
    __slots__ = ("query",)
    QUERY_FIELD_NUMBER: _ClassVar[int]
    query: _common_pb2.SignedQuery
    def __init__(self, query: _Optional[_Union[_common_pb2.SignedQuery, _Mapping]] = ...) -> None: ...

class GetCatalogRequest(_message.Message):
    __slots__ = ("agreement",)
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    agreement: str
    def __init__(self, agreement: _Optional[str] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("query", "target_half_width")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TARGET_HALF_WIDTH_FIELD_NUMBER: _ClassVar[int]
    query: _common_pb2.SignedQuery
    target_half_width: float
    def __init__(self, query: _Optional[_Union[_common_pb2.SignedQuery, _Mapping]] = ..., target_half_width: _Optional[float] = ...) -> None: ...

class BudgetRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: _common_pb2.SignedQuery
    def __init__(self, request: _Optional[_Union[_common_pb2.SignedQuery, _Mapping]] = ...) -> None: ...

class GetCatalogResponse(_message.Message):
    __slots__ = ("node", "datasets")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    node: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetSchema]
    def __init__(self, node: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetSchema, _Mapping]]] = ...) -> None: ...

class NodeRelease(_message.Message):
    __slots__ = ("query_id", "node", "dataset", "columns", "rows", "epsilon", "execution_seconds", "agreement", "min_group_size", "suppress_below")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESS_BELOW_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    node: str
    dataset: str
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReleaseColumn]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.ReleaseRow]
    epsilon: str
    execution_seconds: float
    agreement: str
    min_group_size: int
    suppress_below: int
    def __init__(self, query_id: _Optional[str] = ..., node: _Optional[str] = ..., dataset: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[_common_pb2.ReleaseColumn, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[_common_pb2.ReleaseRow, _Mapping]]] = ..., epsilon: _Optional[str] = ..., execution_seconds: _Optional[float] = ..., agreement: _Optional[str] = ..., min_group_size: _Optional[int] = ..., suppress_below: _Optional[int] = ...) -> None: ...
