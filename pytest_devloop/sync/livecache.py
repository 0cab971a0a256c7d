"""Live objects a sync listed, reused by the next sync while a watch vouches for them.

Owns one decision: may the sync skip a list request for a collection (one kind in one
namespace, with devloop's artifact label) and use what it listed last time? Only when a
`ChangeFeed` (watch mode's drift watch: a watch stream on that collection) was connected
before the list was made and has seen no event on the collection since, and this process
wrote nothing under the collection since (every write through `Kube` invalidates the
collections above its path). Otherwise the sync lists, as it does without a feed: a
one-shot pytest run has no feed and lists every time.

With it, a watch cycle lists only the collections where something happened (an object it
applied, pods whose status moved, someone's edit), so the sync's cost grows with what
changed, not with how many kinds a chart has.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol


class ChangeFeed(Protocol):
    def version(self, path: str) -> int | None:
        """A counter of the events seen on the collection at `path` (an API path such as
        `/apis/apps/v1/namespaces/ns/deployments`), or None when no watch stream on it
        is connected (then nothing may be reused)."""
        ...


class LiveCache:
    """The last listing per (collection path, label selector), with the feed's counter
    read before that list was made."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[int, list[dict[str, Any]]]] = {}
        self.hits = 0

    def before_list(self, path: str) -> int | None:
        """Read the feed's counter before listing `path` (None: do not store the list)."""
        return self.feed.version(path)

    def get(self, path: str, selector: str) -> list[dict[str, Any]] | None:
        with self._lock:
            entry = self._entries.get((path, selector))
        if entry is None:
            return None
        version = self.feed.version(path)
        if version is None or version != entry[0]:
            with self._lock:
                self._entries.pop((path, selector), None)
            return None
        self.hits += 1
        return entry[1]

    def put(
        self, path: str, selector: str, version: int | None, items: list[dict[str, Any]]
    ) -> None:
        if version is None:
            return
        with self._lock:
            self._entries[(path, selector)] = (version, items)

    def wrote(self, path: str) -> None:
        """A write to `path` (an object or a collection): its collection is stale; a write
        to a Namespace or a CustomResourceDefinition may change any collection."""
        broad = path.startswith(("/api/v1/namespaces/", "/apis/apiextensions.k8s.io/")) and (
            path.count("/") <= 4 or "customresourcedefinitions" in path
        )
        with self._lock:
            if broad:
                self._entries.clear()
                return
            for key in [k for k in self._entries if path == k[0] or path.startswith(k[0] + "/")]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
