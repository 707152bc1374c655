"""The server's scavenge operation: one scavenge at a time, in the background, logged in the
system streams where the real server logs it, so that a client can follow it.

A scavenge with id `I` writes, as the real server does: the metadata of `$scavenges-I` (history
kept 30 days), `$scavengeStarted` in `$scavenges-I` and a link to it in `$scavenges`; then, once
done, `$scavengeCompleted` (`result` `Success`, `Stopped` or `Errored`, `error`, `timeTaken`,
`spaceSaved`) and a link to it. A client waits for the `$scavengeCompleted` event of its id.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from esdb_emulator.model import metadata as meta
from esdb_emulator.model.decisions import ANY
from esdb_emulator.model.errors import ScavengeStopped, StoreError
from esdb_emulator.model.records import Proposed
from esdb_emulator.model.store import Store

log = logging.getLogger(__name__)

SCAVENGES = "$scavenges"
STARTED = "$scavengeStarted"
COMPLETED = "$scavengeCompleted"
LINK = "$>"
HISTORY_MAX_AGE = 30 * 24 * 3600  # seconds: the real server's default scavenge history age


def history_stream(scavenge_id: str) -> str:
    return f"{SCAVENGES}-{scavenge_id}"


def time_taken(seconds: float) -> str:
    """A duration as .NET writes a TimeSpan: `hh:mm:ss.fffffff`."""
    ticks = round(seconds * 10_000_000)
    whole, fraction = divmod(ticks, 10_000_000)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{fraction:07d}"


@dataclass
class _Run:
    scavenge_id: str
    stop: threading.Event
    thread: threading.Thread


class Scavenger:
    def __init__(self, store: Store, node_endpoint: str) -> None:
        self.store = store
        self.node_endpoint = node_endpoint
        self._lock = threading.Lock()
        self._running: _Run | None = None
        self._last: _Run | None = None

    @property
    def current(self) -> str | None:
        """The id of the scavenge running now, if any."""
        with self._lock:
            return self._running.scavenge_id if self._running else None

    def start(self) -> tuple[str, bool]:
        """Start a scavenge in the background: its id and True; or, when one is running
        already, that one's id and False."""
        with self._lock:
            if self._running is not None:
                return self._running.scavenge_id, False
            scavenge_id = str(uuid.uuid4())
            stop = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(scavenge_id, stop), name="scavenge", daemon=True
            )
            self._running = self._last = _Run(scavenge_id, stop, thread)
            thread.start()
            return scavenge_id, True

    def stop(self, scavenge_id: str) -> bool:
        """Ask the running scavenge `scavenge_id` to stop; False when it is not running."""
        with self._lock:
            if self._running is None or self._running.scavenge_id != scavenge_id:
                return False
            self._running.stop.set()
            return True

    def wait(self, timeout: float) -> bool:
        """Wait for the last scavenge started to be over (logged); False on timeout."""
        with self._lock:
            last = self._last
        if last is None:
            return True
        last.thread.join(timeout)
        return not last.thread.is_alive()

    def _run(self, scavenge_id: str, stop: threading.Event) -> None:
        began = time.monotonic()
        stream = history_stream(scavenge_id)
        try:
            result, error, saved = self._scavenge(scavenge_id, stream, stop)
        finally:
            with self._lock:
                self._running = None
        completed = {
            "scavengeId": scavenge_id,
            "nodeEndpoint": self.node_endpoint,
            "result": result,
            "error": error,
            "timeTaken": time_taken(time.monotonic() - began),
            "spaceSaved": saved,
        }
        try:
            self._log(stream, COMPLETED, completed)
        except (OSError, StoreError) as exc:
            log.warning("could not log the end of scavenge %s: %s", scavenge_id, exc)

    def _scavenge(
        self, scavenge_id: str, stream: str, stop: threading.Event
    ) -> tuple[str, str | None, int]:
        """Log the start, scavenge: (result, error, bytes saved) as `$scavengeCompleted` says."""
        try:
            self._log_started(scavenge_id, stream)
            report = self.store.scavenge(stop)
        except ScavengeStopped as exc:
            log.info("scavenge %s stopped: %s", scavenge_id, exc)
            return "Stopped", None, 0
        except (OSError, StoreError) as exc:
            log.error("scavenge %s failed: %s", scavenge_id, exc)
            return "Errored", str(exc), 0
        log.info(
            "scavenge %s removed %d of %d records, %d bytes",
            scavenge_id,
            report.removed,
            report.scanned,
            report.space_saved,
        )
        return "Success", None, report.space_saved

    def _log_started(self, scavenge_id: str, stream: str) -> None:
        history = {"$maxAge": HISTORY_MAX_AGE, "$acl": {"$r": "$ops"}}
        self.store.append(meta.metastream(stream), ANY, [meta.metadata_event(history)])
        started = {"scavengeId": scavenge_id, "nodeEndpoint": self.node_endpoint}
        self._log(stream, STARTED, started)

    def _log(self, stream: str, type_: str, data: Mapping[str, object]) -> None:
        """Append a scavenge event to `stream` and a link to it to `$scavenges`."""
        event = Proposed(uuid.uuid4(), type_, True, orjson.dumps(data), b"")
        written = self.store.append(stream, ANY, [event])
        link = Proposed(uuid.uuid4(), LINK, False, f"{written.revision}@{stream}".encode(), b"")
        self.store.append(SCAVENGES, ANY, [link])
