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

Polling, not inotify: it works the same on network and container file systems, costs a few stats
per file per interval, and a change is served within about two intervals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable

from modelserve.core.manager import ModelManager
from modelserve.errors import ModelServeError
from modelserve.repository.layout import Fingerprint, fingerprint, scan

log = logging.getLogger(__name__)


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
        """Poll until cancelled. A failing poll is logged and the next one tries again."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("repository poll failed; retrying in %s s", self._interval)

    async def poll(self) -> None:
        current = await asyncio.to_thread(self._snapshot)
        catalog = await asyncio.to_thread(self._manager.catalog.snapshot)
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
                await self._manager.load_model(name)
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
