from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Disclosure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISCLOSURE_UNSPECIFIED: _ClassVar[Disclosure]
    AGGREGATE: _ClassVar[Disclosure]
    METADATA: _ClassVar[Disclosure]
    STATUS: _ClassVar[Disclosure]
    MASKED: _ClassVar[Disclosure]

class ColumnType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_TYPE_UNSPECIFIED: _ClassVar[ColumnType]
    INTEGER: _ClassVar[ColumnType]
    FLOAT: _ClassVar[ColumnType]
    BOOLEAN: _ClassVar[ColumnType]
    STRING: _ClassVar[ColumnType]

class Mechanism(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MECHANISM_UNSPECIFIED: _ClassVar[Mechanism]
    DISCRETE_LAPLACE: _ClassVar[Mechanism]
    LAPLACE: _ClassVar[Mechanism]
    RATIO: _ClassVar[Mechanism]
    DISCRETE_GAUSSIAN: _ClassVar[Mechanism]

class AggregateFunction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGGREGATE_FUNCTION_UNSPECIFIED: _ClassVar[AggregateFunction]
    COUNT: _ClassVar[AggregateFunction]
    SUM: _ClassVar[AggregateFunction]
    AVG: _ClassVar[AggregateFunction]
DISCLOSURE_UNSPECIFIED: Disclosure
AGGREGATE: Disclosure
METADATA: Disclosure
STATUS: Disclosure
MASKED: Disclosure
COLUMN_TYPE_UNSPECIFIED: ColumnType
INTEGER: ColumnType
FLOAT: ColumnType
BOOLEAN: ColumnType
STRING: ColumnType
MECHANISM_UNSPECIFIED: Mechanism
DISCRETE_LAPLACE: Mechanism
LAPLACE: Mechanism
RATIO: Mechanism
DISCRETE_GAUSSIAN: Mechanism
AGGREGATE_FUNCTION_UNSPECIFIED: AggregateFunction
COUNT: AggregateFunction
SUM: AggregateFunction
AVG: AggregateFunction
DISCLOSURE_FIELD_NUMBER: _ClassVar[int]
disclosure: _descriptor.FieldDescriptor

class Value(_message.Message):
    __slots__ = ("string_value", "int_value", "float_value", "bool_value", "null_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    NULL_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int_value: int
    float_value: float
    bool_value: bool
    null_value: bool
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., null_value: _Optional[bool] = ...) -> None: ...

class SignedQuery(_message.Message):
    __slots__ = ("payload", "signature", "certificate")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    signature: bytes
    certificate: bytes
    def __init__(self, payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., certificate: _Optional[bytes] = ...) -> None: ...

class ColumnSpec(_message.Message):
    __slots__ = ("name", "type", "bounded", "lower", "upper", "has_categories", "categories", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BOUNDED_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    HAS_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ColumnType
    bounded: bool
    lower: float
    upper: float
    has_categories: bool
    categories: _containers.RepeatedCompositeFieldContainer[Value]
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ColumnType, str]] = ..., bounded: _Optional[bool] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., has_categories: _Optional[bool] = ..., categories: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., description: _Optional[str] = ...) -> None: ...

class DatasetSchema(_message.Message):
    __slots__ = ("name", "columns", "privacy_unit", "max_rows_per_person", "description", "secure_honest_nodes", "secure_delta", "secure_holders")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_UNIT_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_PER_PERSON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SECURE_HONEST_NODES_FIELD_NUMBER: _ClassVar[int]
    SECURE_DELTA_FIELD_NUMBER: _ClassVar[int]
    SECURE_HOLDERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    columns: _containers.RepeatedCompositeFieldContainer[ColumnSpec]
    privacy_unit: str
    max_rows_per_person: int
    description: str
    secure_honest_nodes: int
    secure_delta: str
    secure_holders: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[ColumnSpec, _Mapping]]] = ..., privacy_unit: _Optional[str] = ..., max_rows_per_person: _Optional[int] = ..., description: _Optional[str] = ..., secure_honest_nodes: _Optional[int] = ..., secure_delta: _Optional[str] = ..., secure_holders: _Optional[_Iterable[str]] = ...) -> None: ...

class SecureShare(_message.Message):
    __slots__ = ("body", "certificate", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: str
    certificate: bytes
    signature: bytes
    def __init__(self, body: _Optional[str] = ..., certificate: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Estimate(_message.Message):
    __slots__ = ("value", "noise_scale", "ci_low", "ci_high", "mechanism")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NOISE_SCALE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    value: float
    noise_scale: float
    ci_low: float
    ci_high: float
    mechanism: Mechanism
    def __init__(self, value: _Optional[float] = ..., noise_scale: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., mechanism: _Optional[_Union[Mechanism, str]] = ...) -> None: ...

class Cell(_message.Message):
    __slots__ = ("estimate", "sum", "count")
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    estimate: Estimate
    sum: Estimate
    count: Estimate
    def __init__(self, estimate: _Optional[_Union[Estimate, _Mapping]] = ..., sum: _Optional[_Union[Estimate, _Mapping]] = ..., count: _Optional[_Union[Estimate, _Mapping]] = ...) -> None: ...

class ReleaseColumn(_message.Message):
    __slots__ = ("name", "function", "column")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    name: str
    function: AggregateFunction
    column: str
    def __init__(self, name: _Optional[str] = ..., function: _Optional[_Union[AggregateFunction, str]] = ..., column: _Optional[str] = ...) -> None: ...

class ReleaseRow(_message.Message):
    __slots__ = ("group", "cells", "suppressed", "support")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    group: _containers.RepeatedCompositeFieldContainer[Value]
    cells: _containers.RepeatedCompositeFieldContainer[Cell]
    suppressed: bool
    support: Estimate
    def __init__(self, group: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., cells: _Optional[_Iterable[_Union[Cell, _Mapping]]] = ..., suppressed: _Optional[bool] = ..., support: _Optional[_Union[Estimate, _Mapping]] = ...) -> None: ...

class NoisePreview(_message.Message):
    __slots__ = ("mechanism", "noise_scale", "half_width")
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    NOISE_SCALE_FIELD_NUMBER: _ClassVar[int]
    HALF_WIDTH_FIELD_NUMBER: _ClassVar[int]
    mechanism: Mechanism
    noise_scale: float
    half_width: float
    def __init__(self, mechanism: _Optional[_Union[Mechanism, str]] = ..., noise_scale: _Optional[float] = ..., half_width: _Optional[float] = ...) -> None: ...

class AggregatePreview(_message.Message):
    __slots__ = ("name", "estimate", "sum", "count", "epsilon_for_target")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FOR_TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    estimate: NoisePreview
    sum: NoisePreview
    count: NoisePreview
    epsilon_for_target: str
    def __init__(self, name: _Optional[str] = ..., estimate: _Optional[_Union[NoisePreview, _Mapping]] = ..., sum: _Optional[_Union[NoisePreview, _Mapping]] = ..., count: _Optional[_Union[NoisePreview, _Mapping]] = ..., epsilon_for_target: _Optional[str] = ...) -> None: ...

class BudgetLine(_message.Message):
    __slots__ = ("agreement", "purpose", "analyst", "analyst_spent", "per_analyst", "analyst_remaining", "agreement_spent", "total", "agreement_remaining", "per_query", "answered", "valid_until")
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ANALYST_FIELD_NUMBER: _ClassVar[int]
    ANALYST_SPENT_FIELD_NUMBER: _ClassVar[int]
    PER_ANALYST_FIELD_NUMBER: _ClassVar[int]
    ANALYST_REMAINING_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_SPENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_REMAINING_FIELD_NUMBER: _ClassVar[int]
    PER_QUERY_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    agreement: str
    purpose: str
    analyst: str
    analyst_spent: str
    per_analyst: str
    analyst_remaining: str
    agreement_spent: str
    total: str
    agreement_remaining: str
    per_query: str
    answered: int
    valid_until: str
    def __init__(self, agreement: _Optional[str] = ..., purpose: _Optional[str] = ..., analyst: _Optional[str] = ..., analyst_spent: _Optional[str] = ..., per_analyst: _Optional[str] = ..., analyst_remaining: _Optional[str] = ..., agreement_spent: _Optional[str] = ..., total: _Optional[str] = ..., agreement_remaining: _Optional[str] = ..., per_query: _Optional[str] = ..., answered: _Optional[int] = ..., valid_until: _Optional[str] = ...) -> None: ...

class NodeExplanation(_message.Message):
    __slots__ = ("node", "dataset", "agreement", "epsilon", "budget", "fits", "aggregates", "groups", "min_group_size")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    FITS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATES_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    node: str
    dataset: str
    agreement: str
    epsilon: str
    budget: BudgetLine
    fits: bool
    aggregates: _containers.RepeatedCompositeFieldContainer[AggregatePreview]
    groups: int
    min_group_size: int
    def __init__(self, node: _Optional[str] = ..., dataset: _Optional[str] = ..., agreement: _Optional[str] = ..., epsilon: _Optional[str] = ..., budget: _Optional[_Union[BudgetLine, _Mapping]] = ..., fits: _Optional[bool] = ..., aggregates: _Optional[_Iterable[_Union[AggregatePreview, _Mapping]]] = ..., groups: _Optional[int] = ..., min_group_size: _Optional[int] = ...) -> None: ...

class NodeBudget(_message.Message):
    __slots__ = ("node", "lines")
    NODE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    node: str
    lines: _containers.RepeatedCompositeFieldContainer[BudgetLine]
    def __init__(self, node: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[BudgetLine, _Mapping]]] = ...) -> None: ...
