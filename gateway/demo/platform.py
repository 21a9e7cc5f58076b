"""The demo exchange platform: the naive upstream HTTP API that ShareGuard protects.

It serves every dataset of the demo store, classified_cases included, to anyone: enforcing
share types, purposes and masking is the gateway's job, not the platform's. Responses are
built from records serialized once at start-up, so the platform is never the bottleneck of a
benchmark, and exports are streamed in batches, never held whole in memory.

Run it with `python -m gateway.demo.platform --port 8090`, or call `serve`, or use
`running_platform` in tests to get a base URL of a platform running in a background thread.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.demo.data import DEFAULT_SEED, INDEXED_FIELDS, DemoStore, Record, generate
from gateway.demo.data import iter_population as _iter_population

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_LIMIT",
    "DEFAULT_PORT",
    "EXPORT_BATCH",
    "MAX_EXPORT_SCALE",
    "MAX_LIMIT",
    "create_app",
    "main",
    "running_platform",
    "serve",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_EXPORT_SCALE = 1000  # population × 1000 is about 2.8 GB of NDJSON
EXPORT_BATCH = 1000  # records per streamed chunk: about 250 KB

_MEDIA_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
}


class _ApiError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def _error_response(status: int, error: str, message: str) -> Response:
    return Response(
        orjson.dumps({"error": error, "message": message}),
        status_code=status,
        media_type="application/json",
    )


@dataclass(frozen=True, slots=True)
class _Served:
    """One dataset as the platform serves it: records and their JSON, serialized once."""

    id: str
    records: Sequence[Record]
    encoded: Sequence[bytes]
    fields: tuple[str, ...]
    filters: frozenset[str]


def create_app(store: DemoStore) -> Starlette:
    """The platform's ASGI application over `store` (see CONTRACT.md, demo platform paths)."""
    served = {
        ds: _Served(
            id=ds,
            records=records,
            encoded=[orjson.dumps(r) for r in records],
            fields=store.field_names(ds),
            filters=frozenset(f for f in INDEXED_FIELDS if f in store.catalog[ds].field_names),
        )
        for ds, records in store.records.items()
    }
    catalog_body = orjson.dumps({"datasets": [ds.public_metadata() for ds in store.catalog]})

    def dataset_of(request: Request) -> _Served:
        dataset_id = request.path_params["dataset"]
        dataset = served.get(dataset_id)
        if dataset is None:
            raise _ApiError(404, "unknown_dataset", f"数据集不存在 (no such dataset): {dataset_id}")
        return dataset

    async def catalog(request: Request) -> Response:
        return Response(catalog_body, media_type="application/json")

    async def records(request: Request) -> Response:
        dataset = dataset_of(request)
        query = request.query_params
        limit = _int_param(query.get("limit"), "limit", DEFAULT_LIMIT)
        offset = _int_param(query.get("offset"), "offset", 0)
        if limit > MAX_LIMIT:
            raise _ApiError(
                400,
                "invalid_parameter",
                f"limit 不能超过 {MAX_LIMIT} (limit must not exceed {MAX_LIMIT}): {limit}",
            )
        positions: Sequence[int] | None = None
        for name in INDEXED_FIELDS:
            value = query.get(name)
            if value is None:
                continue
            if name not in dataset.filters:
                raise _ApiError(
                    400,
                    "invalid_parameter",
                    f"数据集 {dataset.id} 没有字段 {name} (dataset has no field {name})",
                )
            matches = store.matching(dataset.id, name, value)
            positions = (
                matches if positions is None else sorted(set(positions).intersection(matches))
            )
        if positions is None:
            total = len(dataset.encoded)
            page = dataset.encoded[offset : offset + limit]
        else:
            total = len(positions)
            page = [dataset.encoded[i] for i in positions[offset : offset + limit]]
        head = {"dataset": dataset.id, "total": total, "offset": offset, "limit": limit}
        # The envelope is serialized without its closing brace and the records spliced in,
        # so the records' JSON from start-up is reused as is.
        body = b"".join((orjson.dumps(head)[:-1], b',"records":[', b",".join(page), b"]}"))
        return Response(body, media_type="application/json")

    async def record(request: Request) -> Response:
        dataset = dataset_of(request)
        key = request.path_params["key"]
        position = store.positions[dataset.id].get(key)
        if position is None:
            raise _ApiError(404, "not_found", f"记录不存在 (no such record): {dataset.id}/{key}")
        return Response(dataset.encoded[position], media_type="application/json")

    async def export(request: Request) -> Response:
        dataset = dataset_of(request)
        fmt = request.query_params.get("format", "json")
        if fmt not in _MEDIA_TYPES:
            raise _ApiError(
                400,
                "unsupported_format",
                f"不支持的导出格式 (unsupported format): {fmt}; 可选 (one of) json, ndjson, csv",
            )
        scale = _int_param(request.query_params.get("scale"), "scale", 1)
        if not 1 <= scale <= MAX_EXPORT_SCALE:
            raise _ApiError(
                400,
                "invalid_parameter",
                f"scale 须在 1 到 {MAX_EXPORT_SCALE} 之间 "
                f"(scale must be between 1 and {MAX_EXPORT_SCALE}): {scale}",
            )
        if scale > 1 and dataset.id != "population":
            raise _ApiError(
                400,
                "invalid_parameter",
                "只有 population 支持放大导出 (only population exports can be scaled)",
            )
        chunks = _export_chunks(dataset, fmt, len(dataset.records) * scale, store.seed)
        return StreamingResponse(
            chunks,
            media_type=_MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="{dataset.id}.{fmt}"'},
        )

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _ApiError)
        return _error_response(exc.status, exc.error, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return _error_response(404, "not_found", "路径不存在 (no such path)")
        if exc.status_code == 405:
            return _error_response(405, "method_not_allowed", "不支持该方法 (method not allowed)")
        return _error_response(exc.status_code, "http_error", str(exc.detail))

    return Starlette(
        routes=[
            Route("/api/v1/catalog", catalog, methods=["GET"]),
            Route("/api/v1/datasets/{dataset}/records", records, methods=["GET"]),
            Route("/api/v1/datasets/{dataset}/records/{key}", record, methods=["GET"]),
            Route("/api/v1/datasets/{dataset}/export", export, methods=["GET"]),
        ],
        exception_handlers={_ApiError: api_error, HTTPException: http_error},
    )


def _int_param(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    # ASCII digits only: int() would also take "+5", " 5", "1_000" and full-width digits.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise _ApiError(
            400,
            "invalid_parameter",
            f"{name} 须为非负整数 ({name} must be a non-negative integer): {raw!r}",
        )
    return int(raw)


def _export_chunks(dataset: _Served, fmt: str, total: int, seed: int) -> Iterator[bytes]:
    """The export body in chunks of EXPORT_BATCH records.

    Records up to the stored count come from the start-up serialization; beyond it (a scaled
    population export) they are generated on the fly, which gives the same records as the
    store would at that size, since population records depend only on their index.
    """
    stored = len(dataset.records)
    batches = ((start, min(start + EXPORT_BATCH, total)) for start in range(0, total, EXPORT_BATCH))
    if fmt == "json":
        yield b'{"dataset":' + orjson.dumps(dataset.id) + b',"records":['
        for n, (start, stop) in enumerate(batches):
            separator = b"," if n else b""
            if stop <= stored:
                yield separator + b",".join(dataset.encoded[start:stop])
            else:
                # orjson writes a whole list faster than record by record; drop its brackets.
                yield separator + orjson.dumps(_records(dataset, start, stop, seed))[1:-1]
        yield b"]}"
    elif fmt == "ndjson":
        for start, stop in batches:
            if stop <= stored:
                lines: Iterable[bytes] = dataset.encoded[start:stop]
            else:
                lines = map(orjson.dumps, _records(dataset, start, stop, seed))
            yield b"\n".join(lines) + b"\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(dataset.fields)
        for start, stop in batches:
            writer.writerows(r.values() for r in _records(dataset, start, stop, seed))
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
        if total == 0:
            yield buffer.getvalue().encode("utf-8")


def _records(dataset: _Served, start: int, stop: int, seed: int) -> Sequence[Record]:
    stored = len(dataset.records)
    if stop <= stored:
        return dataset.records[start:stop]
    head = list(dataset.records[start:stored]) if start < stored else []
    return head + list(_iter_population(max(start, stored), stop, seed))


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------


class _PlatformServer(uvicorn.Server):
    """uvicorn's server, announcing its URL once it listens and stopping on a threading.Event."""

    def __init__(
        self,
        config: uvicorn.Config,
        ready: threading.Event | None,
        stop: threading.Event | None,
        announce: Callable[[str], None] | None,
    ) -> None:
        super().__init__(config)
        self.url: str | None = None
        self._ready = ready
        self._stop = stop
        self._announce = announce

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        if self._announce is not None:
            self._announce(self.url)
        if self._ready is not None:
            self._ready.set()

    async def on_tick(self, counter: int) -> bool:
        if self._stop is not None and self._stop.is_set():
            return True
        return await super().on_tick(counter)


def _print_ready(url: str) -> None:
    print(f"演示交换平台已就绪 (demo exchange platform ready): {url}", flush=True)


def _build_server(
    host: str,
    port: int,
    store: DemoStore,
    ready: threading.Event | None,
    stop: threading.Event | None,
    announce: Callable[[str], None] | None,
) -> _PlatformServer:
    config = uvicorn.Config(
        create_app(store),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    return _PlatformServer(config, ready, stop, announce)


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    seed: int = DEFAULT_SEED,
    scale: float = 1.0,
    store: DemoStore | None = None,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    announce: bool = True,
) -> None:
    """Run the platform until SIGINT or SIGTERM (main thread) or until `stop` is set.

    Generates the store from `seed` and `scale` unless `store` is given. Port 0 picks a free
    port; the ready line printed (when `announce`) carries the real URL. `ready` is set once
    the socket listens. Returns normally on a signal, so the process exits with status 0.
    """
    server = _build_server(
        host,
        port,
        store or generate(seed, scale),
        ready,
        stop,
        _print_ready if announce else None,
    )
    in_main_thread = threading.current_thread() is threading.main_thread()
    # uvicorn stops gracefully on SIGINT/SIGTERM and then raises the signal again for the
    # handler that was there before; a no-op handler there makes the stop a clean return.
    previous: dict[signal.Signals, Any] = {}
    if in_main_thread:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _ignore_signal)
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if announce and server.started:
        print("演示交换平台已停止 (demo exchange platform stopped)", flush=True)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    pass


@contextlib.contextmanager
def running_platform(
    *,
    store: DemoStore | None = None,
    seed: int = DEFAULT_SEED,
    scale: float = 1.0,
    host: str = DEFAULT_HOST,
    port: int = 0,
    timeout: float = 30.0,
) -> Iterator[str]:
    """A platform serving in a background thread for the duration of the block; yields its URL."""
    ready, stop = threading.Event(), threading.Event()
    server = _build_server(host, port, store or generate(seed, scale), ready, stop, None)
    thread = threading.Thread(target=server.run, name="demo-platform", daemon=True)
    thread.start()
    try:
        waited = 0.0
        while not ready.wait(0.05):
            waited += 0.05
            # A failed start (port taken) ends the thread: no need to wait out the timeout.
            if not thread.is_alive() or waited > timeout:
                raise RuntimeError("演示交换平台未能启动 (demo exchange platform did not start)")
        assert server.url is not None
        yield server.url
    finally:
        stop.set()
        thread.join(timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: python -m gateway.demo.platform [--host] [--port] [--seed] [--scale]."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.demo.platform",
        description="演示交换平台 (demo exchange platform): serves the synthetic demo datasets.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on ({DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port, 0 for any free one ({DEFAULT_PORT})"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data seed")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every dataset's size (1.0)"
    )
    args = parser.parse_args(argv)
    if not (args.scale > 0 and math.isfinite(args.scale)):
        parser.error(f"--scale 须为正数 (must be positive): {args.scale}")
    try:
        serve(args.host, args.port, seed=args.seed, scale=args.scale)
    except KeyboardInterrupt:  # Ctrl-C while the data was still being generated
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
