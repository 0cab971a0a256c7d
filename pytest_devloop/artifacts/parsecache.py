"""Parsed documents of rendered streams, remembered by their text.

Owns the cache that spares re-reading the same large YAML document on every render:
CustomResourceDefinitions of operator charts are megabytes of YAML that reading as
Kubernetes clients do (`render.load_yaml`) takes seconds for, and they come out of each
render of the chart unchanged. A document's parsed value is kept as JSON under the sha256
of its text, in memory and under `.devloop/parsed/`, so a later render, also in a new
pytest run, reads it back with `json.loads`. Only large documents are kept: small ones
parse faster than a file opens.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MIN_CHARS = 4096
MAX_FILES = 2000


class ParseCache:
    """Parsed values of large documents by the sha256 of their text (`folder`: on disk
    too; None: in memory only)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._memory: dict[str, str] = {}
        self.hits = 0

    @staticmethod
    def key(text: str) -> str | None:
        if len(text) < MIN_CHARS:
            return None
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> Any:
        """The value stored under `key` (a fresh copy, callers may change it), or None."""
        data = self._memory.get(key)
        if data is None and self.folder is not None:
            try:
                data = (self.folder / f"{key}.json").read_text()
            except OSError:
                return None
            self._memory[key] = data
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
