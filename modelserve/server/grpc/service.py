"""The Open Inference Protocol v2 gRPC service (``inference.GRPCInferenceService``).

Handlers take and return raw bytes and parse with modelserve's own message classes, so that a
malformed protobuf is INVALID_ARGUMENT with protobuf's reason (grpcio's own deserializer would
make it INTERNAL), and so that the server does not need generated stubs (see messages.py).
Errors map to gRPC status codes through protocol/status.py, as REST maps them to HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from modelserve import __version__
from modelserve.core.manager import ModelManager
from modelserve.errors import DeadlineExceeded, ErrorCode, InvalidInput, ModelServeError, Unsupported
from modelserve.protocol import names
from modelserve.protocol.names import parse_version
from modelserve.protocol.status import grpc_status
from modelserve.protocol.v2.grpc import codec
from modelserve.protocol.v2.grpc import messages as pb
from modelserve.routing.router import Router
from modelserve.server.auth import ADMIN, INFER, PUBLIC, Authenticator, token_from
from modelserve.server.control import checked_target
from modelserve.server.gate import Gate
from modelserve.server.info import EXTENSIONS, SERVER_NAME
from modelserve.server.metrics import Metrics
from modelserve.server.observe import REQUEST_ID_HEADER, VARIANT_HEADER, Observed, Observer, watched

log = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[bytes, bytes]
Unary = Callable[[Any, Context], Awaitable[Any]]
Stream = Callable[[AsyncIterator[bytes], Context], AsyncIterator[bytes]]


class GrpcService:
    def __init__(
        self,
        manager: ModelManager,
        control_api: bool,
        observer: Observer | None = None,
        metrics: Metrics | None = None,
        router: Router | None = None,
        auth: Authenticator | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._auth = auth  # None: auth off
        self._gate = gate  # None: no graceful shutdown
        self._manager = manager
        self._router = router if router is not None else Router(manager)
        self._metrics = metrics
        self._control_api = control_api
        self._observer = observer if observer is not None else Observer(manager, access_log=False)

    def handler(self) -> grpc.GenericRpcHandler:
        unary: dict[str, Unary] = {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
            "ModelInfer": self.model_infer,
            "RepositoryIndex": self.repository_index,
            "RepositoryModelLoad": self.repository_load,
            "RepositoryModelUnload": self.repository_unload,
            "ModelStatistics": self.model_statistics,
        }
        methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            name: grpc.unary_unary_rpc_method_handler(_unary(name, self._gated(name, self._guarded(name, fn))))
            for name, fn in unary.items()
        }
        stream = self.model_stream_infer if self._auth is None else self._guarded_stream
        methods["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(self._gated_stream(stream))
        return grpc.method_handlers_generic_handler(pb.SERVICE, methods)

    # -- shutdown (server/gate.py) ---------------------------------------------------------

    def _gated(self, method: str, fn: Unary) -> Unary:
        """``fn`` counted by the gate: UNAVAILABLE once shutdown began, and for a call still running
        when the grace period ends. Health probes pass."""
        gate = self._gate
        if gate is None or method in ("ServerLive", "ServerReady"):
            return fn

        async def gated(msg: Any, context: Context) -> Any:
            gate.enter()
            try:
                return await fn(msg, context)
            except asyncio.CancelledError:
                if gate.aborting:
                    raise gate.aborted() from None
                raise
            finally:
                gate.leave()

        return gated

    def _gated_stream(self, stream: Stream) -> Stream:
        gate = self._gate
        if gate is None:
            return stream

        async def gated(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
            try:
                gate.enter()
            except ModelServeError as exc:
                await context.abort(grpc_status(exc.code), exc.message)
            try:
                async for reply in stream(requests, context):
                    yield reply
            except asyncio.CancelledError:
                if not gate.aborting:
                    raise
                await context.abort(grpc.StatusCode.UNAVAILABLE, gate.aborted().message)
            finally:
                gate.leave()

        return gated

    # -- authentication (server/auth.py) ---------------------------------------------------

    def _guarded(self, method: str, fn: Unary) -> Unary:
        """``fn`` behind the API key check ``method`` needs (UNAUTHENTICATED / PERMISSION_DENIED)."""
        auth = self._auth
        if auth is None:
            return fn
        needed = _GRPC_ROLES.get(method, INFER)

        async def guarded(msg: Any, context: Context) -> Any:
            auth.check(_token(context), needed)
            return await fn(msg, context)

        return guarded

    async def _guarded_stream(self, requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
        assert self._auth is not None
        try:
            self._auth.check(_token(context), INFER)
        except ModelServeError as exc:
            await context.abort(grpc_status(exc.code), exc.message)
        async for reply in self.model_stream_infer(requests, context):
            yield reply

    # -- health and metadata ---------------------------------------------------------------

    async def server_live(self, msg: Any, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, msg: Any, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self._manager.ready)

    async def model_ready(self, msg: Any, context: Context) -> Any:
        try:
            version = parse_version(msg.version)
            self._manager.acquire(_model_name(msg.name), version, _label(context, version)).release()
        except ModelServeError as exc:
            if exc.code is ErrorCode.UNAVAILABLE:
                return pb.ModelReadyResponse(ready=False)
            raise
        return pb.ModelReadyResponse(ready=True)

    async def server_metadata(self, msg: Any, context: Context) -> Any:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    async def model_metadata(self, msg: Any, context: Context) -> Any:
        version = parse_version(msg.version)
        meta = await self._manager.metadata(_model_name(msg.name), version, _label(context, version))
        return codec.encode_metadata(meta)

    # -- inference -------------------------------------------------------------------------

    async def model_infer(self, msg: Any, context: Context) -> Any:
        metadata = context.invocation_metadata() or ()
        request_id = next((v for k, v in metadata if k == REQUEST_ID_HEADER), None)
        seen = self._observer.start(
            "grpc",
            msg.model_name,
            request_id if isinstance(request_id, str) else None,
            metadata,
            "inference.GRPCInferenceService/ModelInfer",
        )
        trailers: list[tuple[str, str]] = []
        reply = await watched(seen, self._model_infer(msg, context, seen, trailers))
        trailers.extend(seen.response_headers())
        if trailers:
            context.set_trailing_metadata(tuple(trailers))
        return reply

    async def _model_infer(self, msg: Any, context: Context, seen: Observed, trailers: list[tuple[str, str]]) -> Any:
        deadline = _deadline(context)
        name, version = _model_name(msg.model_name), parse_version(msg.model_version)
        with seen.span("decode"):
            request = codec.decode_infer_request(msg, self._manager.max_request_elements)
        label = _label(context, version, request.parameters.get(names.LABEL_PARAMETER))
        metadata = context.invocation_metadata() or ()

        def header(key: str) -> str | None:
            value = next((v for k, v in metadata if k == key), None)
            return value if isinstance(value, str) else None

        answer = await self._router.infer(name, version, label, request, header, seen, deadline)
        response, sunset = answer.response, answer.sunset
        if answer.variant is not None:
            trailers.append((VARIANT_HEADER, answer.variant))
        if sunset is not None:  # the REST headers' twins, as trailing metadata
            deprecated, retires = sunset
            trailers += [("deprecation", f"@{int(deprecated.timestamp())}"), ("sunset", retires.isoformat())]
        with seen.span("encode"):
            return codec.encode_infer_response(response, request)

    async def model_stream_infer(self, requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
        """One response per request, in order; a failed request yields ``error_message`` and the stream goes on."""
        async for raw in requests:
            msg = None
            try:
                msg = _parse(pb.ModelInferRequest, raw)
                reply = pb.ModelStreamInferResponse(infer_response=await self.model_infer(msg, context))
            except ModelServeError as exc:
                reply = pb.ModelStreamInferResponse(error_message=_client_message(exc, "ModelStreamInfer"))
                if msg is not None:
                    reply.infer_response.id = msg.id
                    reply.infer_response.model_name = msg.model_name
            except Exception as exc:
                reply = pb.ModelStreamInferResponse(error_message=_internal(exc, "ModelStreamInfer"))
            yield reply.SerializeToString()

    async def model_statistics(self, msg: Any, context: Context) -> Any:
        if self._metrics is None:
            raise Unsupported("statistics are not kept by this server")
        name = _model_name(msg.name) if msg.name else ""
        doc = self._metrics.statistics(name, parse_version(msg.version))
        return json_format.ParseDict(doc, pb.ModelStatisticsResponse())

    # -- model repository ------------------------------------------------------------------

    async def repository_index(self, msg: Any, context: Context) -> Any:
        self._check_repository(msg.repository_name)
        return codec.encode_index(self._manager.index(ready_only=msg.ready))

    async def repository_load(self, msg: Any, context: Context) -> Any:
        name = self._check_control(msg)
        await self._manager.load_model(name)
        return pb.RepositoryModelLoadResponse()

    async def repository_unload(self, msg: Any, context: Context) -> Any:
        name = self._check_control(msg)
        await self._manager.unload_model(name)
        return pb.RepositoryModelUnloadResponse()

    def _check_control(self, msg: Any) -> str:
        if self._control_api:
            self._check_repository(msg.repository_name)
        return checked_target(self._control_api, msg.model_name, msg.parameters)

    def _check_repository(self, name: str) -> None:
        if name and name != self._manager.repository.name:
            raise InvalidInput(
                f"repository {name!r} is not served here; this server serves {self._manager.repository.name!r} "
                "(or leave repository_name empty)"
            )


_GRPC_ROLES = {
    "ServerLive": PUBLIC,
    "ServerReady": PUBLIC,
    "RepositoryModelLoad": ADMIN,
    "RepositoryModelUnload": ADMIN,
}


def _token(context: Context) -> str | None:
    pairs = ((k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str))
    return token_from(pairs)


def _label(context: Context, version: int | None, parameter: object = None) -> str | None:
    """The version label from the ``model-version-label`` metadata or the request parameter."""
    metadata = [v for k, v in context.invocation_metadata() or () if k == names.LABEL_HEADER]
    if len(set(metadata)) > 1:
        raise InvalidInput(f"metadata {names.LABEL_HEADER} is sent {len(metadata)} times with different values")
    header = metadata[0] if metadata else None
    return names.pick_label(
        version, (f"metadata {names.LABEL_HEADER}", header), (f"parameter {names.LABEL_PARAMETER}", parameter)
    )


def _trailers(exc: Exception) -> tuple[tuple[str, str], ...]:
    """The request and trace ids an inference error leaves with (see server/observe.watched)."""
    # connection-level headers (Connection: close) mean nothing in HTTP/2 metadata, and grpc refuses them
    return tuple((k, v) for k, v in getattr(exc, "response_headers", ()) if k != "connection")


def _unary(method: str, fn: Unary) -> Callable[[bytes, Context], Awaitable[bytes]]:
    request_type, _ = pb.method_types(method)

    async def handle(raw: bytes, context: Context) -> bytes:
        try:
            response = await fn(_parse(request_type, raw), context)
        except ModelServeError as exc:
            await context.abort(grpc_status(exc.code), _client_message(exc, method), _trailers(exc))
        except Exception as exc:
            await context.abort(grpc.StatusCode.INTERNAL, _internal(exc, method), _trailers(exc))
        return bytes(response.SerializeToString())

    return handle


def _parse(message_type: Any, raw: bytes) -> Any:
    try:
        return message_type.FromString(raw)
    except DecodeError as exc:
        raise InvalidInput(f"malformed {message_type.DESCRIPTOR.name} protobuf message: {exc}") from None


def _model_name(name: str) -> str:
    if not name:
        raise InvalidInput("the model name is empty")
    return name


def _deadline(context: Context) -> float | None:
    """The client's deadline in ``time.monotonic()`` seconds; DeadlineExceeded if already past."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise DeadlineExceeded("the client's deadline passed before the request could start; it was not run")
    return time.monotonic() + remaining


def _client_message(exc: ModelServeError, method: str) -> str:
    if exc.code is ErrorCode.INTERNAL:
        return _internal(exc, method)
    return exc.message


def _internal(exc: BaseException, method: str) -> str:
    request_id = uuid.uuid4().hex[:16]
    log.error("internal error in gRPC %s (request id %s)", method, request_id, exc_info=exc)
    return f"internal error (request id {request_id})"
