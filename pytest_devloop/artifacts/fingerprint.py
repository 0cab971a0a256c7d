"""Content digests of artifact inputs: what decides whether a chart, image or manifest set
must be rendered or built again.

Owns `FileHasher` (sha256 of files, with a stat cache so that a warm fingerprint reads
no file whose stat is unchanged, persisted between runs), tree digests of a folder
filtered by ignore rules, `combine` for digests of several parts, and the two ignore-file
dialects artifacts use, each as its tool implements it:

- `.helmignore`, as Helm's `pkg/ignore` and chart directory loader apply it;
- `.dockerignore`, as `moby/patternmatcher` and its `ignorefile` reader apply it.

Ignore callables take a path relative to the tree root with `/` separators; a directory
is passed with a trailing `/` (`"templates/"`), a file without. A directory for which the
callable returns True is not entered at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat as statmod
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CACHE_VERSION",
    "DockerIgnore",
    "FileHasher",
    "HelmIgnore",
    "IgnoreFileError",
    "combine",
    "dockerignore_matcher",
    "helmignore_matcher",
    "walk_files",
]

IgnoreFn = Callable[[str], bool]

# Version of the persisted stat cache; a file of another version is ignored (rebuilt).
CACHE_VERSION = 1

# A cached digest is trusted only if the file's timestamps were already this far in the
# past when its content was read. Otherwise a same-size write landing in the same
# timestamp tick as our read would leave the stat unchanged and the digest stale (git's
# "racy clean" problem). Linux file timestamps come from a coarse clock (<= 10 ms per
# tick); filesystems with whole-second timestamps need a wider window.
_SETTLE_NS = 100_000_000
_SETTLE_COARSE_NS = 2_000_000_000


def combine(*parts: str | bytes) -> str:
    """sha256 (hex) of several parts, each length-prefixed so that no two different
    sequences of parts collide (`("ab", "c")` differs from `("a", "bc")`)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


# -- file hashing with a stat cache ------------------------------------------------------

# (size, mtime_ns, ctime_ns, inode, digest). ctime joins size, mtime and inode because
# tools that restore mtimes (`cp -p`, `rsync -t`, tar) can change content while
# keeping size and mtime; ctime cannot be set back by any of them.
_Entry = tuple[int, int, int, int, str]


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class FileHasher:
    """sha256 of files with a stat cache: a file is read again only when its
    (size, mtime_ns, ctime_ns, inode) changed since it was last hashed.

    Touching a file without changing its content changes its stat, so it is re-read, and
    its digest stays the same. Counters `reads` (files whose content was read) and
    `hits` (digests served from the cache) say what a fingerprint cost. Not thread-safe.
    """

    def __init__(self, *, clock: Callable[[], int] = time.time_ns) -> None:
        self._entries: dict[str, _Entry] = {}
        self._touched: set[str] = set()
        # Whether the entries changed since load or the last save: a sync in which no
        # file changed writes nothing (sync and watch cycles save after every pass).
        self._dirty = False
        self._clock = clock
        self.reads = 0
        self.hits = 0
        # Why a persisted cache could not be used (None when it was, or there was none).
        self.load_problem: str | None = None

    def __len__(self) -> int:
        return len(self._entries)

    # -- digests --

    def file_digest(self, path: Path) -> str:
        """sha256 (hex) of the file's content (symlinks followed)."""
        key = str(Path(path).absolute())
        return self._digest(key, Path(key).stat())

    def tree_digest(
        self,
        root: Path,
        *,
        ignore: IgnoreFn | None = None,
        follow_symlinks: bool = True,
    ) -> str:
        """Digest of a folder: sorted relative paths, the executable bit and the content of
        every file `ignore` keeps. Empty folders do not count. A file given as `root` is
        digested like a folder holding only that file.

        Symlinks are followed by default (Helm's loader follows them); with
        `follow_symlinks=False` a symlink counts by its target text (what `docker build`
        sends). A symlink loop is not entered twice; a dangling symlink counts by its target.
        """
        h = hashlib.sha256()
        h.update(b"devloop-tree-v1\0")
        for rel, key, st in walk_entries(root, ignore=ignore, follow_symlinks=follow_symlinks):
            if st is None or statmod.S_ISLNK(st.st_mode):
                content = "link:" + str(Path(key).readlink())
            else:
                content = self._digest(key, st)
            mode = "x" if st is not None and st.st_mode & 0o111 else "-"
            for part in (rel, mode, content):
                data = part.encode("utf-8", "surrogateescape")
                h.update(len(data).to_bytes(8, "big"))
                h.update(data)
        return h.hexdigest()

    def _digest(self, key: str, st: os.stat_result) -> str:
        self._touched.add(key)
        entry = self._entries.get(key)
        if (
            entry is not None
            and entry[0] == st.st_size
            and entry[1] == st.st_mtime_ns
            and entry[2] == st.st_ctime_ns
            and entry[3] == st.st_ino
        ):
            self.hits += 1
            return entry[4]
        started = self._clock()
        with Path(key).open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        self.reads += 1
        self._dirty = True
        newest = max(st.st_mtime_ns, st.st_ctime_ns)
        coarse = st.st_mtime_ns % 1_000_000_000 == 0 and st.st_ctime_ns % 1_000_000_000 == 0
        if newest < started - (_SETTLE_COARSE_NS if coarse else _SETTLE_NS):
            self._entries[key] = (*_stat_key(st), digest)
        else:
            # Written too recently to trust the stat: hash it again next time.
            self._entries.pop(key, None)
        return digest

    # -- persistence --

    def save(self, path: Path) -> None:
        """Write the stat cache as versioned JSON, atomically (temp file + rename).

        Entries of files that were not used by this hasher and no longer exist are dropped,
        so the cache does not grow with every file that ever existed.
        """
        entries = {
            key: list(entry)
            for key, entry in self._entries.items()
            if key in self._touched or os.path.lexists(key)
        }
        if not self._dirty and len(entries) == len(self._entries) and path.exists():
            return
        data = json.dumps({"version": CACHE_VERSION, "entries": entries}, separators=(",", ":"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            Path(tmp).replace(path)
            self._dirty = False
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, *, clock: Callable[[], int] = time.time_ns) -> FileHasher:
        """A hasher with the cache saved at `path`; an empty one (with `load_problem` saying
        why) when the file is missing, unreadable, malformed or of another version."""
        hasher = cls(clock=clock)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return hasher
        except (OSError, ValueError) as e:
            hasher.load_problem = f"{path} is unreadable ({e}): file digests are recomputed"
            return hasher
        if not isinstance(raw, dict) or raw.get("version") != CACHE_VERSION:
            version = raw.get("version") if isinstance(raw, dict) else None
            hasher.load_problem = (
                f"{path} has cache version {version!r}, expected {CACHE_VERSION}: "
                "file digests are recomputed"
            )
            return hasher
        entries = raw.get("entries")
        if not isinstance(entries, dict):
            hasher.load_problem = f"{path} has no entries: file digests are recomputed"
            return hasher
        for key, value in entries.items():
            if (
                isinstance(value, list)
                and len(value) == 5
                and all(isinstance(v, int) for v in value[:4])
                and isinstance(value[4], str)
            ):
                hasher._entries[key] = (value[0], value[1], value[2], value[3], value[4])
        return hasher


# -- walking a tree -----------------------------------------------------------------------


def walk_entries(
    root: Path,
    *,
    ignore: IgnoreFn | None = None,
    follow_symlinks: bool = True,
) -> list[tuple[str, str, os.stat_result | None]]:
    """(relative path, absolute path, stat) of every file under `root` that `ignore` keeps,
    sorted by relative path. The stat is None for a dangling symlink; with
    `follow_symlinks=False` a symlink's stat is its own (lstat)."""
    top = Path(root).absolute()
    st = top.stat() if follow_symlinks else top.lstat()
    if not statmod.S_ISDIR(st.st_mode):
        return [(top.name, str(top), st)]
    out: list[tuple[str, str, os.stat_result | None]] = []
    _walk(
        str(top), "", out, ignore=ignore, follow=follow_symlinks, ancestors={(st.st_dev, st.st_ino)}
    )
    out.sort(key=lambda item: item[0])
    return out


def walk_files(root: Path, *, ignore: IgnoreFn | None = None) -> list[str]:
    """Relative paths (with `/`) of the files `tree_digest` would digest, sorted."""
    return [rel for rel, _, _ in walk_entries(root, ignore=ignore)]


def _walk(
    directory: str,
    prefix: str,
    out: list[tuple[str, str, os.stat_result | None]],
    *,
    ignore: IgnoreFn | None,
    follow: bool,
    ancestors: set[tuple[int, int]],
) -> None:
    # os.scandir hands out the entry type without a stat call; only files are stat'ed.
    with os.scandir(directory) as it:
        entries = list(it)
    for entry in entries:
        rel = prefix + entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=follow)
        except OSError:
            is_dir = False
        if is_dir:
            if ignore is not None and ignore(rel + "/"):
                continue
            if entry.is_symlink():
                # Only a symlink can lead back to an ancestor: check those for loops.
                try:
                    dst = entry.stat()
                except OSError:
                    continue
                ident = (dst.st_dev, dst.st_ino)
                if ident in ancestors:
                    continue
                _walk(
                    entry.path,
                    rel + "/",
                    out,
                    ignore=ignore,
                    follow=follow,
                    ancestors=ancestors | {ident},
                )
            else:
                _walk(entry.path, rel + "/", out, ignore=ignore, follow=follow, ancestors=ancestors)
            continue
        if ignore is not None and ignore(rel):
            continue
        try:
            st: os.stat_result | None = entry.stat(follow_symlinks=follow)
        except OSError:
            if not entry.is_symlink():
                continue  # vanished while walking
            st = None  # dangling symlink
        if st is not None and not (statmod.S_ISREG(st.st_mode) or statmod.S_ISLNK(st.st_mode)):
            continue  # sockets, fifos, devices: not content
        out.append((rel, entry.path, st))


# -- ignore files ---------------------------------------------------------------------------


class IgnoreFileError(ValueError):
    """A pattern in an ignore file that the tool itself would reject."""

    def __init__(self, path: Path | None, line: int, pattern: str, reason: str) -> None:
        self.path = path
        self.line = line
        self.pattern = pattern
        self.reason = reason
        where = f"{path}:{line}" if path is not None else f"line {line}"
        super().__init__(f"{where}: invalid pattern {pattern!r}: {reason}")


def _read_lines(path: Path) -> list[str] | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    # Go's bufio.Scanner splits on \n only (and drops a \r before it).
    return [line.removesuffix("\r") for line in text.split("\n")]


def _go_glob(pattern: str) -> re.Pattern[str]:
    """Go's `path/filepath.Match` pattern as a regular expression to fullmatch.

    `*` and `?` never match `/`; `[...]` classes (negated with `^`, ranges, `\\`
    escapes) may; `\\x` is a literal x. Raises ValueError where Go returns
    ErrBadPattern."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            if negated:
                i += 1
            ranges: list[str] = []
            count = 0
            while True:
                if i < n and pattern[i] == "]" and count > 0:
                    i += 1
                    break
                lo, i = _class_char(pattern, i)
                hi = lo
                if i < n and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                count += 1
                if lo <= hi:  # Go accepts a reversed range; it just matches nothing
                    ranges.append(f"{re.escape(lo)}-{re.escape(hi)}")
            if ranges:
                out.append(f"[{'^' if negated else ''}{''.join(ranges)}]")
            else:
                out.append("." if negated else "(?!)")
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern):
        raise ValueError("unterminated character class")
    c = pattern[i]
    if c in "-]":
        raise ValueError(f"unexpected {c!r} in character class")
    if c == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError("unterminated character class")
        c = pattern[i]
    return c, i + 1


@dataclass(frozen=True)
class _HelmRule:
    raw: str
    regex: re.Pattern[str]
    negate: bool
    must_dir: bool
    whole_path: bool  # rooted (`/x`) or containing `/`: matched against the whole path

    def matches(self, path: str) -> bool:
        name = path if self.whole_path else path.rpartition("/")[2]
        return self.regex.fullmatch(name) is not None


class HelmIgnore:
    """`.helmignore` rules as Helm's `pkg/ignore` applies them when it loads a chart folder.

    Rules are tried in order and the first decision wins. A plain rule ignores what it
    matches. A negated rule (`!x`) is peculiar in Helm: it ignores everything it does NOT
    match and lets the next rules decide about what it matches; so `!x` on its own keeps
    only `x` (and `!templates/` ignores Chart.yaml). A trailing `/` makes a rule apply to
    directories only; a leading `/` or any `/` inside matches the whole relative path,
    otherwise only the base name. `**` is an error, as in Helm. After the file's rules
    Helm adds one default: `templates/.?*` (dot-files directly in templates/).

    Helm does not read the `.helmignore` of an unpacked subchart in `charts/`: the
    parent's rules apply to its files.
    """

    DEFAULTS = ("templates/.?*",)

    def __init__(self, rules: Sequence[_HelmRule]) -> None:
        self.rules = list(rules)

    @classmethod
    def from_lines(
        cls, lines: Iterable[str], *, path: Path | None = None, defaults: bool = True
    ) -> HelmIgnore:
        rules: list[_HelmRule] = []
        numbered = [(i + 1, line) for i, line in enumerate(lines)]
        if defaults:
            numbered += [(0, d) for d in cls.DEFAULTS]
        for number, line in numbered:
            rule = line.strip()
            if not rule or rule.startswith("#"):
                continue
            if "**" in rule:
                raise IgnoreFileError(
                    path, number, rule, "Helm does not support `**` in .helmignore"
                )
            body = rule
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            must_dir = body.endswith("/")
            if must_dir:
                body = body[:-1]
            whole_path = "/" in body
            body = body.removeprefix("/")
            try:
                regex = _go_glob(body)
            except ValueError as e:
                raise IgnoreFileError(path, number, rule, str(e)) from e
            rules.append(_HelmRule(rule, regex, negate, must_dir, whole_path))
        return cls(rules)

    @classmethod
    def for_chart(cls, chart_dir: Path) -> HelmIgnore:
        ignore_file = chart_dir / ".helmignore"
        return cls.from_lines(_read_lines(ignore_file) or [], path=ignore_file)

    def ignores(self, relpath: str) -> bool:
        is_dir = relpath.endswith("/")
        path = relpath.rstrip("/")
        if not path or path == ".":
            return False
        for rule in self.rules:
            if rule.negate:
                if rule.must_dir and not is_dir:
                    return True
                if not rule.matches(path):
                    return True
                continue
            if rule.must_dir and not is_dir:
                continue
            if rule.matches(path):
                return True
        return False


def helmignore_matcher(chart_dir: Path) -> IgnoreFn:
    """The chart folder's `.helmignore` (plus Helm's default rule) as an ignore callable.

    Raises IgnoreFileError for a pattern Helm itself would reject."""
    return HelmIgnore.for_chart(chart_dir).ignores


# moby/patternmatcher: how a cleaned pattern is matched.
_EXACT, _PREFIX, _SUFFIX, _REGEX = "exact", "prefix", "suffix", "regex"


@dataclass(frozen=True)
class _DockerPattern:
    text: str  # cleaned, without the leading `!`
    exclusion: bool
    kind: str
    regex: re.Pattern[str] | None

    def matches(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


def _compile_docker(text: str, exclusion: bool) -> _DockerPattern:
    """One pattern, compiled as moby/patternmatcher does: plain text compares exactly,
    `x/**` by prefix, `**x` by suffix, anything else by a regular expression in which
    `*` and `?` stop at `/` and `**` spans directories."""
    regex = "^"
    kind = _EXACT
    i, n = 0, len(text)
    step = 0
    while i < n:
        c = text[i]
        i += 1
        if c == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1  # `**/` is treated as `**`
                if i >= n:
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        regex += ".*"
                        kind = _REGEX
                else:
                    regex += "(.*/)?"
                    kind = _REGEX
                if step == 0:
                    kind = _SUFFIX
            else:
                regex += "[^/]*"
                kind = _REGEX
        elif c == "?":
            regex += "[^/]"
            kind = _REGEX
        elif c in ".+()|{}$":
            regex += "\\" + c
        elif c == "\\":
            if i < n:
                regex += re.escape(text[i])
                i += 1
                kind = _REGEX
            else:
                regex += "\\\\"
        elif c in "[]":
            regex += c
            kind = _REGEX
        else:
            regex += c
        step += 1
    compiled = None
    if kind == _REGEX:
        try:
            # Go's `$` is the end of the text and its `.` stops at newlines: `\Z`, no DOTALL.
            compiled = re.compile(regex + r"\Z")
        except re.error as e:
            raise ValueError(str(e)) from e
    return _DockerPattern(text, exclusion, kind, compiled)


def _go_clean(path: str) -> str:
    """Go's `path.Clean`: collapse `//`, `.` and `..`; no trailing `/`; "" becomes "."."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


class DockerIgnore:
    """`.dockerignore` rules as `docker build` applies them (moby/patternmatcher).

    Every pattern is tried and the last one that matches decides; `!x` re-includes. A
    pattern matches a path or any of its parent folders (`docs` excludes `docs/a.md`),
    `*` and `?` do not cross `/`, `**` crosses any number of folders, a leading `/` is
    dropped, `#` starts a comment only in the first column. The `.dockerignore` and the
    Dockerfile are always sent (docker adds them back as exceptions).
    """

    def __init__(self, patterns: Sequence[_DockerPattern]) -> None:
        self.patterns = list(patterns)
        self._exceptions = [p for p in self.patterns if p.exclusion]

    @staticmethod
    def read_patterns(lines: Iterable[str]) -> list[str]:
        """The patterns of an ignore file, normalized as moby's `ignorefile.ReadAll` does."""
        return [pattern for _, pattern in _numbered_patterns(lines)]

    @classmethod
    def from_patterns(
        cls,
        patterns: Iterable[str],
        *,
        path: Path | None = None,
        dockerfile: str | None = "Dockerfile",
    ) -> DockerIgnore:
        """Rules from already-read patterns (`!` marks an exception)."""
        return cls._build(list(enumerate(patterns, start=1)), path, dockerfile)

    @classmethod
    def _build(
        cls, numbered: list[tuple[int, str]], path: Path | None, dockerfile: str | None
    ) -> DockerIgnore:
        compiled: list[_DockerPattern] = []
        for number, raw in numbered:
            text = raw.strip()
            if not text:
                continue
            text = _go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise IgnoreFileError(path, number, raw, 'illegal exclusion pattern: "!"')
                text = text[1:]
            try:
                _go_glob(text)  # moby validates each pattern with filepath.Match
                compiled.append(_compile_docker(text, exclusion))
            except ValueError as e:
                raise IgnoreFileError(path, number, raw, str(e)) from e
        matcher = cls(compiled)
        # As the docker CLI does: the build files are sent even when the patterns exclude them.
        keep = [".dockerignore"] + ([dockerfile] if dockerfile else [])
        for build_file in keep:
            name = _go_clean(build_file).removeprefix("/")
            if matcher.excluded(name):
                compiled.append(_compile_docker(name, True))
        return cls(compiled)

    @classmethod
    def for_context(cls, context: Path, *, dockerfile: str = "Dockerfile") -> DockerIgnore:
        """The rules of `context/.dockerignore`. `dockerfile` is the Dockerfile's path
        relative to the context; a `<Dockerfile>.dockerignore` beside it wins, as BuildKit
        reads it."""
        specific = context / f"{dockerfile}.dockerignore"
        for candidate in (specific, context / ".dockerignore"):
            lines = _read_lines(candidate)
            if lines is not None:
                return cls._build(_numbered_patterns(lines), candidate, dockerfile)
        return cls._build([], None, dockerfile)

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative, `/`-separated) is left out of the build context:
        moby's `MatchesOrParentMatches`."""
        path = _go_clean(path)
        if path == ".":
            return False
        parent = path.rpartition("/")[0]
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self.patterns:
            # An inclusion cannot change an excluded path, nor an exception a kept one.
            if pattern.exclusion != matched:
                continue
            hit = pattern.matches(path)
            if not hit:
                for i in range(1, len(parents) + 1):
                    if pattern.matches("/".join(parents[:i])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def ignores(self, relpath: str) -> bool:
        """The ignore callable for tree walks: a directory is skipped only when it is
        excluded and no exception pattern could re-include something inside it."""
        if not relpath.endswith("/"):
            return self.excluded(relpath)
        path = relpath.rstrip("/")
        if not self.excluded(path):
            return False
        segments = path.split("/")
        return not any(_may_match_inside(p.text, segments) for p in self._exceptions)


def _numbered_patterns(lines: Iterable[str]) -> list[tuple[int, str]]:
    """(line number, pattern) of an ignore file, as moby's `ignorefile.ReadAll` reads it:
    a `#` in the first column starts a comment, whitespace is trimmed, a pattern is cleaned
    like a path and loses a leading `/`, and `!` is kept in front."""
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.removeprefix("\ufeff") if number == 1 else raw
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append((number, "!" + pattern if invert else pattern))
    return out


def _may_match_inside(pattern: str, dir_segments: list[str]) -> bool:
    """Whether an exception pattern could match a path inside the directory (conservative:
    True unless a leading segment of the pattern cannot match the directory's)."""
    parts = pattern.split("/")
    for i, name in enumerate(dir_segments):
        if i >= len(parts):
            return True
        part = parts[i]
        if "**" in part:
            return True
        if not _compile_docker(part, False).matches(name):
            return False
    return True


def dockerignore_matcher(context: Path, *, dockerfile: str = "Dockerfile") -> IgnoreFn:
    """The build context's `.dockerignore` as an ignore callable (see DockerIgnore).

    Raises IgnoreFileError for a pattern docker itself would reject."""
    return DockerIgnore.for_context(context, dockerfile=dockerfile).ignores
