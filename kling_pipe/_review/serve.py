"""Serving the review page: in the foreground (`kling-pipe review`) or beside a run.

`serve_forever` is the `review` command's: it serves until Ctrl-C. `ReviewThread` serves from
a thread of its own with its own event loop, so that `run --review` can render in the main
thread meanwhile and keep the page up after the run, for picking and approving; a test drives
it the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import webbrowser

from kling_pipe._review.server import Review, ReviewSite
from kling_pipe._shotlist.specs import ShotList


def open_browser(url: str) -> None:
    """Open *url* in the user's browser, if there is one to open (never fails)."""
    try:
        webbrowser.open(url)
    except webbrowser.Error:
        return


async def serve_forever(site: ReviewSite, started: concurrent.futures.Future[str]) -> None:
    """Serve *site* until cancelled (Ctrl-C); *started* gets the URL once it is up."""
    try:
        try:
            url = await site.start()
        except BaseException as error:  # the port taken: said to whoever waits for the URL
            started.set_exception(error)
            raise
        started.set_result(url)
        await asyncio.Event().wait()
    finally:
        await site.close()


class ReviewThread:
    """A review served from a thread of its own, until `stop`."""

    def __init__(self, shotlist: ShotList, origin: str, *, port: int = 0) -> None:
        self.site = ReviewSite(Review(shotlist, origin), port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._task: concurrent.futures.Future[None] | None = None

    def start(self) -> str:
        """Start serving; return the URL (with its token) once the port is bound."""
        self._thread.start()
        started: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._task = asyncio.run_coroutine_threadsafe(serve_forever(self.site, started), self._loop)
        try:
            return started.result(timeout=30)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
            # Ending either way: cancelled, or it failed to start (the caller has that error).
            with contextlib.suppress(Exception):
                self._task.result(timeout=10)
            self._task = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()
