"""Parsed documents of rendered streams, remembered by their text.

Owns the cache that spares re-reading the same large YAML document on every render:
CustomResourceDefinitions of operator charts are megabytes of YAML that reading as
Kubernetes clients do (`render.load_yaml`) takes seconds for, and they come out of each
render of the chart unchanged. A document's parsed value is kept as JSON under the sha256
of its text, in memory and under `.devloop/parsed/`, so a later render, also in a new
pytest run, reads it back with `json.loads`. Only large documents go to disk: small ones
parse faster than a file opens. In memory every document is kept (by its text), so a
watch that renders a 150-object chart per save parses only the documents that changed:
`json.loads` of a small document is ~30x faster than reading its YAML.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MIN_CHARS = 4096
MAX_FILES = 2000
MAX_SMALL = 20_000  # small documents kept in memory (about 40 MB at most)
_SMALL = "\x00"  # prefix of a small document's key: no sha256 hex digest starts with it


class ParseCache:
    """Parsed values of large documents by the sha256 of their text (`folder`: on disk
    too; None: in memory only)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._memory: dict[str, str] = {}
        self._small: dict[str, str] = {}  # text of a small document -> its JSON
        self.hits = 0

    @staticmethod
    def key(text: str) -> str | None:
        """The cache key of a document: its sha256 when large, the text itself when small
        (kept in memory only)."""
        if len(text) < MIN_CHARS:
            return _SMALL + text
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> Any:
        """The value stored under `key` (a fresh copy, callers may change it), or None."""
        if key.startswith(_SMALL):
            return self._loads(self._small.get(key))
        data = self._memory.get(key)
        if data is None and self.folder is not None:
            try:
                data = (self.folder / f"{key}.json").read_text()
            except OSError:
                return None
            self._memory[key] = data
        return self._loads(data)

    def _loads(self, data: str | None) -> Any:
        if data is None:
            return None
        try:
            value = json.loads(data)
        except ValueError:
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        try:
            data = json.dumps(value, separators=(",", ":"))
        except (TypeError, ValueError):
            return  # not JSON: parse it again next time
        if key.startswith(_SMALL):
            if len(self._small) >= MAX_SMALL:
                self._small.clear()
            self._small[key] = data
            return
        self._memory[key] = data
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{os.getpid()}.tmp"
            tmp.write_text(data)
            tmp.replace(self.folder / f"{key}.json")
            self._trim()
        except OSError:
            pass  # only a cache

    def _trim(self) -> None:
        assert self.folder is not None
        files = list(self.folder.glob("*.json"))
        if len(files) <= MAX_FILES:
            return
        files.sort(key=lambda p: p.stat().st_mtime)
        for path in files[: len(files) - MAX_FILES // 2]:
            path.unlink(missing_ok=True)
