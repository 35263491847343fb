"""The floor under raftkit's CPU per command at low rates: what one wake-up
of an idle asyncio loop costs on this machine, with no Raft in it.

    .venv/bin/python -m benchmarks.loop_wakeup [RATE ...]

A writer process sends 16-byte messages over loopback TCP at a fixed rate
(one ``asyncio.sleep`` per message), an echo process sends each back.
Prints, per rate, the CPU µs per message of each process (``process_time``
over the run, start-up included for the echoer). Each message costs the
writer two wake-ups (its timer and the echo) and the echoer one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from typing import Any

DURATION = 5.0
MESSAGE = b"x" * 16


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _Count(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data) // len(MESSAGE)


def _echo_process(ports: Any, results: Any) -> None:
    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(DURATION + 2)  # bounded: outlives the writer's run
        server.close()

    asyncio.run(serve())
    results.put(time.process_time())


async def _write(port: int, rate: int) -> tuple[int, int, float]:
    transport, counter = await asyncio.get_running_loop().create_connection(_Count, "127.0.0.1", port)
    started, sent, cpu = time.monotonic(), 0, time.process_time()
    while (now := time.monotonic()) < started + DURATION:
        due = int((now - started) * rate)
        while sent < due:
            transport.write(MESSAGE)
            sent += 1
        await asyncio.sleep(1 / rate)
    await asyncio.sleep(0.2)
    transport.close()
    return sent, counter.received, time.process_time() - cpu


def measure(rate: int) -> str:
    ports: Any = multiprocessing.Queue()
    results: Any = multiprocessing.Queue()
    echo = multiprocessing.Process(target=_echo_process, args=(ports, results))
    echo.start()
    try:
        port = ports.get(timeout=10)
        sent, echoed, cpu = asyncio.run(_write(port, rate))
        echo_cpu = results.get(timeout=DURATION + 10)
    finally:
        echo.join(timeout=DURATION + 10)
        if echo.is_alive():
            echo.kill()
    return (f"{rate:>7}/s: {sent} sent, {echoed} echoed; writer {1e6 * cpu / sent:.0f} µs CPU per message, "
            f"echoer {1e6 * echo_cpu / sent:.0f}")


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["1000", "5000"]:
        print(measure(int(arg)))
