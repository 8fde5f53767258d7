"""Hot reload: poll the repository and converge the served models to what is on disk.

Every ``interval`` seconds each model directory is fingerprinted (a stat per file, nothing read;
see repository.layout.fingerprint). A model whose fingerprint changed is reloaded through
:meth:`ModelManager.load_model`, which loads new versions beside the serving ones, switches over
only when they are READY and drains the old ones, so no request is dropped; a version that fails
to load leaves the serving ones untouched. A model directory that disappeared is unloaded.

A change is acted on only once the fingerprint has stayed the same for two polls in a row, so a
version directory that is still being copied (its files still growing) is never loaded half
written. Publishing atomically is still best: write the version elsewhere on the same file system
and ``mv`` it into place.

When the server follows the registry (``serve --registry``), every poll also reads the
registry's stages; a change (a promotion, a rollback, a retirement scheduled) makes every model
converge at once: the catalog decides, and unchanged versions are kept as they are.
With an artifact store (``--artifact-store``), every poll then has the catalog fetch the
selected versions the local cache lacks (``Catalog.sync``), and retry fetches that failed.

File-system events (watchfiles: inotify, FSEvents, ReadDirectoryChangesW) wake the watcher as soon
as something changes, so a published version serves within about a second; the timed poll is the
fallback where events do not arrive (network file systems, some container mounts) and costs a few
stats per file per interval: without events a change serves within about two intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from pathlib import Path

from modelserve.core.manager import ModelManager
from modelserve.errors import ModelServeError
from modelserve.repository.layout import Fingerprint, fingerprint, scan

log = logging.getLogger(__name__)

# after a file-system event: how long files must stay unchanged to be loaded (a copy in progress
# that pauses longer is caught by the next event: a version that fails to load never serves)
SETTLE_S = 1.0


class RepositoryWatcher:
    def __init__(self, manager: ModelManager, interval: float) -> None:
        self._manager = manager
        self._interval = interval
        self._applied: dict[str, Fingerprint] = {}  # what the served state was built from
        self._seen: dict[str, Fingerprint] = {}  # the previous poll's, to tell a settled change
        self._catalog: Hashable = None  # the catalog's state (registry stages) the served state follows

    def prime(self) -> None:
        """Record the repository as the initial load sees it: only later changes reload."""
        self._applied = self._snapshot()
        self._seen = dict(self._applied)
        self._catalog = self._manager.catalog.snapshot()

    async def run(self) -> None:
        """Poll until cancelled: every ``interval`` seconds, and soon after a file-system event.

        File-system events (inotify and its kin, through watchfiles) make a change serve within a
        fraction of a second; the timed poll is the fallback where events do not arrive (network
        file systems, some container mounts) and the clock for registry changes. A failing poll is
        logged and the next one tries again."""
        wake, stop = asyncio.Event(), asyncio.Event()
        events = asyncio.create_task(self._events(wake, stop))
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._interval)
                if wake.is_set():
                    # a change is happening: look now, then again shortly, which loads it once
                    # its files stopped changing (a copy in progress keeps sending events)
                    wake.clear()
                    await self._poll_logged()
                    await asyncio.sleep(min(SETTLE_S, self._interval))
                await self._poll_logged()
        finally:
            stop.set()  # ends the watching thread at once; cancelling alone waits for its timeout
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events

    async def _poll_logged(self) -> None:
        try:
            await self.poll()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("repository poll failed; retrying in %s s", self._interval)

    async def _events(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        """Set ``wake`` on every batch of file-system events under the repository; give up quietly
        (polling goes on) where events are not available."""
        root = self._manager.repository.resolve()

        def visible(change: object, path: str) -> bool:  # hidden entries: uploads, the registry database
            relative = Path(path).relative_to(root) if Path(path).is_relative_to(root) else Path(path)
            return not any(part.startswith(".") for part in relative.parts)

        try:
            from watchfiles import awatch

            async for _ in awatch(root, watch_filter=visible, debounce=50, step=25, stop_event=stop):
                wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no inotify (limits, exotic file systems): the timed poll remains
            log.warning("file-system events unavailable (%s); polling every %s s", exc, self._interval)

    async def poll(self) -> None:
        current = await asyncio.to_thread(self._snapshot)
        catalog = await asyncio.to_thread(self._manager.catalog.snapshot)
        # after the snapshots: a version fetched now is there when a registry change reloads the
        # model in this poll; the new directory itself is seen (and settles) in the next ones
        await asyncio.to_thread(self._manager.catalog.sync, self._manager.repository)
        catalog_changed = catalog != self._catalog
        self._catalog = catalog
        settled = {name: fp for name, fp in current.items() if self._seen.get(name) == fp}
        self._seen = current
        for name, fp in settled.items():
            files_changed = self._applied.get(name) != fp
            if not files_changed and not catalog_changed:
                continue
            self._applied[name] = fp  # a failed load is not retried until the files change again
            why = "changed on disk" if files_changed else "may serve other versions (the registry changed)"
            log.info("model %r %s; reloading", name, why)
            try:
                await self._manager.load_model(name, wake=False)
            except ModelServeError as exc:
                log.error("reload of %r failed: %s", name, exc.message)
        for name in [n for n in self._applied if n not in current]:
            del self._applied[name]
            log.info("model %r was removed from the repository; unloading", name)
            try:
                await self._manager.unload_model(name)
            except ModelServeError as exc:
                log.error("unload of %r failed: %s", name, exc.message)

    def _snapshot(self) -> dict[str, Fingerprint]:
        return {source.name: fingerprint(source.path) for source in scan(self._manager.repository)}
