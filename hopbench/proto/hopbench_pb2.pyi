from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hop(_message.Message):
    __slots__ = ("edge", "service", "replica", "received_ns", "forwarded_ns", "arrived_ns", "gathered_ns", "published_ns", "replied_ns", "returned_ns")
    EDGE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_NS_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_NS_FIELD_NUMBER: _ClassVar[int]
    ARRIVED_NS_FIELD_NUMBER: _ClassVar[int]
    GATHERED_NS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_NS_FIELD_NUMBER: _ClassVar[int]
    REPLIED_NS_FIELD_NUMBER: _ClassVar[int]
    RETURNED_NS_FIELD_NUMBER: _ClassVar[int]
    edge: int
    service: str
    replica: int
    received_ns: int
    forwarded_ns: int
    arrived_ns: int
    gathered_ns: int
    published_ns: int
    replied_ns: int
    returned_ns: int
    def __init__(self, edge: _Optional[int] = ..., service: _Optional[str] = ..., replica: _Optional[int] = ..., received_ns: _Optional[int] = ..., forwarded_ns: _Optional[int] = ..., arrived_ns: _Optional[int] = ..., gathered_ns: _Optional[int] = ..., published_ns: _Optional[int] = ..., replied_ns: _Optional[int] = ..., returned_ns: _Optional[int] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("id", "flow", "worker", "seq", "intended_ns", "sent_ns", "trace_id", "warmup", "run_id", "hops", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INTENDED_NS_FIELD_NUMBER: _ClassVar[int]
    SENT_NS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: int
    flow: str
    worker: int
    seq: int
    intended_ns: int
    sent_ns: int
    trace_id: int
    warmup: bool
    run_id: str
    hops: _containers.RepeatedCompositeFieldContainer[Hop]
    payload: bytes
    def __init__(self, id: _Optional[int] = ..., flow: _Optional[str] = ..., worker: _Optional[int] = ..., seq: _Optional[int] = ..., intended_ns: _Optional[int] = ..., sent_ns: _Optional[int] = ..., trace_id: _Optional[int] = ..., warmup: _Optional[bool] = ..., run_id: _Optional[str] = ..., hops: _Optional[_Iterable[_Union[Hop, _Mapping]]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
