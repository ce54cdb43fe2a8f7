"""A TCP proxy for HTTP fault tests: it passes everything through, except the faults a test asks for.

- `cut("PUT", after=N)`: the next PUT is forwarded with its headers and the first N bytes of its body,
  then both connections are dropped (a network fault mid-upload); later requests pass again;
- `answer("PUT", 503)`: the next PUT is read whole but never forwarded; the client gets that status.

Requests are told apart by their headers and `Content-Length` (chunked requests pass untouched, and so
does everything after them on that connection). Runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.webdav_server import free_port


@dataclass
class Fault:
    method: str
    cut_after: int | None = None  # drop the connection after this many body bytes
    status: int | None = None  # answer with this status instead of forwarding
    times: int = 1


@dataclass
class HttpFaultProxy:
    target_host: str
    target_port: int
    port: int = field(default_factory=free_port)
    faults: list[Fault] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # "METHOD path" of every request, in order
    done: list[str] = field(default_factory=list)  # "cut METHOD path" / "503 METHOD path"
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, method: str, after: int, times: int = 1) -> None:
        self.faults.append(Fault(method, cut_after=after, times=times))

    def answer(self, method: str, status: int, times: int = 1) -> None:
        self.faults.append(Fault(method, status=status, times=times))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def _take(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.method == method and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return

        def drop() -> None:
            writer.transport.abort()
            up_writer.transport.abort()

        async def back() -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        responses = asyncio.create_task(back())
        try:
            await self._requests(reader, writer, up_writer, drop)
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            up_writer.transport.abort()
            await responses

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up: asyncio.StreamWriter,
        drop: Callable[[], None],
    ) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = [*lines[0].split(" "), "", ""][:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            self.seen.append(f"{method} {path}")
            if "chunked" in headers.get("transfer-encoding", "").lower():
                up.write(head)
                while data := await reader.read(65536):  # cannot follow requests any more: pass it all
                    up.write(data)
                    await up.drain()
                return
            length = int(headers.get("content-length", "0") or 0)
            fault = self._take(method)
            if fault is not None and fault.status is not None:
                await reader.readexactly(length)
                self.done.append(f"{fault.status} {method} {path}")
                status = f"HTTP/1.1 {fault.status} Injected\r\n"
                writer.write(f"{status}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
                writer.close()
                up.transport.abort()
                return
            up.write(head)
            if fault is not None and fault.cut_after is not None:
                up.write(await reader.readexactly(min(fault.cut_after, length)))
                await up.drain()
                self.done.append(f"cut {method} {path}")
                drop()
                return
            left = length
            while left > 0:
                data = await reader.read(min(65536, left))
                if not data:
                    return
                left -= len(data)
                up.write(data)
                await up.drain()
            await up.drain()
