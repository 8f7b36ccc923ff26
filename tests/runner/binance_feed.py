"""The fake Binance server of tests/exchanges on 127.0.0.1, served from a thread for runner processes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from aiohttp import web

from ..exchanges.fake_binance import FakeBinance


@contextlib.contextmanager
def serve_fake_binance(fake: FakeBinance | None = None) -> Iterator[FakeBinance]:
    """Serve ``fake`` (a fresh one by default) at ``fake.url`` until the block ends."""
    fake = fake if fake is not None else FakeBinance()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, web.AppRunner] = {}

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/api/v3/klines", fake.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        fake.url = f"http://{host}:{port}"
        holder["runner"] = runner
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
        assert started.wait(10)
        yield fake
    finally:
        if "runner" in holder:
            asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
