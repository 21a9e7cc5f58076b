"""A small HTTP/1.1 keep-alive load generator: N connections, each sending requests back to back.

Written on asyncio streams with the least parsing that is still correct for the responses here
(Content-Length or chunked bodies), so that one Python process can drive far more requests per
second than the proxies under test can serve. Its own ceiling is measured too (against the
platform directly) and reported, so a ratio is never read against a saturated client.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    bytes_in: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def summary(self) -> dict[str, float | int | dict[int, int]]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "statuses": self.statuses,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p90_ms": round(self.percentile(90), 3),
            "p99_ms": round(self.percentile(99), 3),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 3) if self.latencies_ms else 0,
            "mb_per_s": round(self.bytes_in / self.seconds / 1e6, 2) if self.seconds else 0,
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    size = 0
    if chunked:
        while True:
            size_line = await reader.readline()
            n = int(size_line.split(b";")[0].strip(), 16)
            if n == 0:
                await reader.readline()
                break
            await reader.readexactly(n + 2)
            size += n
    elif length:
        await reader.readexactly(length)
        size = length
    return status, size


async def _worker(
    host: str, port: int, request: bytes, deadline: float, warmup_until: float, result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            start = time.perf_counter()
            if start >= deadline:
                return
            writer.write(request)
            try:
                status, size = await _read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            end = time.perf_counter()
            if start >= warmup_until:
                result.requests += 1
                result.bytes_in += size
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies_ms.append((end - start) * 1000)
    finally:
        writer.close()


async def run_load(
    url: str,
    headers: dict[str, str] | None = None,
    *,
    connections: int = 8,
    seconds: float = 5.0,
    warmup: float = 1.0,
) -> LoadResult:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    result = LoadResult()
    now = time.perf_counter()
    warmup_until = now + warmup
    deadline = warmup_until + seconds
    await asyncio.gather(
        *(
            _worker(
                parts.hostname or "127.0.0.1",
                parts.port or 80,
                request,
                deadline,
                warmup_until,
                result,
            )
            for _ in range(connections)
        )
    )
    result.seconds = seconds
    return result
