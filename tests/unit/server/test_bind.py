"""The listening socket says it is TCP, so asyncio enables TCP_NODELAY on every connection."""

from __future__ import annotations

import asyncio
import socket

from modelserve.server.lifecycle import _bind


def test_accepted_connections_have_nodelay() -> None:
    """Without it, each small reply waited ~40 ms for the client's delayed ACK (Nagle)."""
    listener = _bind("127.0.0.1", 0)
    seen: list[int] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        while not seen:
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert seen and seen[0] != 0
