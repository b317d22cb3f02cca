"""The background tasks one app starts while answering requests (removing uploaded files
once their job has ended): held until done, since the event loop holds tasks weakly, and
cancelled when the app stops. One per app, so no task outlives its app or is shared."""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def start(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        """Cancel the tasks still running and wait until they have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
