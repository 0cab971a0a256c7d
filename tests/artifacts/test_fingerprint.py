"""Fingerprints: file digests with a stat cache, tree digests, and the ignore dialects of
Helm (.helmignore) and docker (.dockerignore), checked against real Helm where it runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_devloop.artifacts.fingerprint import (
    CACHE_VERSION,
    DockerIgnore,
    FileHasher,
    HelmIgnore,
    IgnoreFileError,
    combine,
    dockerignore_matcher,
    helmignore_matcher,
    walk_files,
)


def settled_clock() -> int:
    """A clock 10 s ahead: every file counts as written long ago, so digests are cached."""
    return time.time_ns() + 10_000_000_000


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- combine -------------------------------------------------------------------------------


def test_combine_is_length_prefixed_and_accepts_bytes() -> None:
    assert combine("ab", "c") != combine("a", "bc")
    assert combine("a", "") != combine("a")
    assert combine("x", b"y") == combine(b"x", "y")
    assert len(combine()) == 64


# -- file digests ----------------------------------------------------------------------------


def test_file_digest_is_sha256_and_cached_by_stat(tmp_path: Path) -> None:
    f = write(tmp_path / "values.yaml", "replicas: 1\n")
    hasher = FileHasher(clock=settled_clock)
    assert hasher.file_digest(f) == hashlib.sha256(b"replicas: 1\n").hexdigest()
    assert (hasher.reads, hasher.hits) == (1, 0)
    hasher.file_digest(f)
    hasher.file_digest(f)
    assert (hasher.reads, hasher.hits) == (1, 2), "an unchanged stat must not re-read the file"


def test_file_digest_does_not_reread_when_opening_is_forbidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = write(tmp_path / "a.txt", "x")
    hasher = FileHasher(clock=settled_clock)
    first = hasher.file_digest(f)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the stat cache should have answered")

    monkeypatch.setattr(Path, "open", no_open)
    assert hasher.file_digest(f) == first


def test_touch_without_change_rereads_and_keeps_the_digest(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", "same content")
    hasher = FileHasher(clock=settled_clock)
    before = hasher.file_digest(f)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert hasher.file_digest(f) == before
    assert hasher.reads == 2, "a new mtime makes the hasher read the file again"


def test_same_size_edit_with_restored_mtime_is_seen(tmp_path: Path) -> None:
    # cp -p, rsync -t and tar restore mtimes; ctime (and here the inode) still change.
    f = write(tmp_path / "a.txt", "replicas: 1")
    hasher = FileHasher(clock=settled_clock)
    before = hasher.file_digest(f)
    st = f.stat()
    f.write_text("replicas: 3")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert hasher.file_digest(f) != before


def test_freshly_written_files_are_not_trusted_from_the_cache(tmp_path: Path) -> None:
    # A same-size write within the same timestamp tick would leave the stat unchanged:
    # a file written moments before it was read is read again next time.
    f = write(tmp_path / "a.txt", "x")
    hasher = FileHasher()  # the real clock: the file was written just now
    hasher.file_digest(f)
    hasher.file_digest(f)
    assert hasher.reads == 2
    assert len(hasher) == 0


# -- tree digests ----------------------------------------------------------------------------


def make_chart(root: Path) -> Path:
    write(root / "Chart.yaml", "apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    write(root / "values.yaml", "replicas: 1\n")
    write(root / "templates" / "deployment.yaml", "kind: Deployment\n")
    write(root / "templates" / "_helpers.tpl", "{{/* */}}\n")
    return root


def test_tree_digest_depends_on_paths_content_and_mode_only(tmp_path: Path) -> None:
    a = make_chart(tmp_path / "a")
    b = make_chart(tmp_path / "b")
    hasher = FileHasher(clock=settled_clock)
    base = hasher.tree_digest(a)
    assert hasher.tree_digest(b) == base, "the same files elsewhere give the same digest"

    (b / "empty-dir").mkdir()
    assert hasher.tree_digest(b) == base, "empty folders do not count"

    (b / "values.yaml").write_text("replicas: 2\n")
    assert hasher.tree_digest(b) != base
    (b / "values.yaml").write_text("replicas: 1\n")
    assert hasher.tree_digest(b) == base

    (b / "templates" / "deployment.yaml").rename(b / "templates" / "deploy.yaml")
    assert hasher.tree_digest(b) != base
    (b / "templates" / "deploy.yaml").rename(b / "templates" / "deployment.yaml")

    (b / "values.yaml").chmod(0o755)
    assert hasher.tree_digest(b) != base, "the executable bit counts (docker copies it)"


def test_tree_digest_warm_reads_nothing_and_ignore_applies(tmp_path: Path) -> None:
    chart = make_chart(tmp_path / "chart")
    write(chart / ".helmignore", "*.bak\n")
    write(chart / "notes.bak", "draft")
    hasher = FileHasher(clock=settled_clock)
    ignore = helmignore_matcher(chart)
    first = hasher.tree_digest(chart, ignore=ignore)
    reads = hasher.reads
    assert reads == 5  # Chart.yaml, values.yaml, two templates, .helmignore
    assert hasher.tree_digest(chart, ignore=ignore) == first
    assert hasher.reads == reads
    (chart / "notes.bak").write_text("another draft")
    assert hasher.tree_digest(chart, ignore=ignore) == first, "ignored files do not count"


def test_tree_digest_of_a_single_file(tmp_path: Path) -> None:
    f = write(tmp_path / "m.yaml", "kind: ConfigMap\n")
    hasher = FileHasher(clock=settled_clock)
    assert hasher.tree_digest(f) == hasher.tree_digest(f)
    assert walk_files(f) == ["m.yaml"]


def test_symlink_loops_and_dangling_links(tmp_path: Path) -> None:
    root = make_chart(tmp_path / "chart")
    (root / "templates" / "loop").symlink_to(root)
    (root / "dangling").symlink_to(root / "missing.yaml")
    hasher = FileHasher(clock=settled_clock)
    digest = hasher.tree_digest(root)
    files = walk_files(root)
    assert "dangling" in files
    # A link back to an ancestor folder is not entered: the walk ends.
    assert not any(f.startswith("templates/loop/") for f in files)
    (root / "linked").symlink_to(root / "templates")
    assert "linked/deployment.yaml" in walk_files(root), "other folder links are followed"
    (root / "dangling").unlink()
    (root / "dangling").symlink_to(root / "other.yaml")
    assert hasher.tree_digest(root) != digest, "a dangling link counts by its target"


def test_walk_without_following_symlinks_counts_links_by_target(tmp_path: Path) -> None:
    root = make_chart(tmp_path / "ctx")
    (root / "link").symlink_to("values.yaml")
    hasher = FileHasher(clock=settled_clock)
    followed = hasher.tree_digest(root)
    kept = hasher.tree_digest(root, follow_symlinks=False)
    assert followed != kept
    (root / "values.yaml").write_text("replicas: 9\n")
    # The link's own digest is its target text: only the file itself changed.
    assert hasher.tree_digest(root, follow_symlinks=False) != kept


# -- the persisted cache ---------------------------------------------------------------------


def test_save_and_load_keep_the_cache(tmp_path: Path) -> None:
    chart = make_chart(tmp_path / "chart")
    cache = tmp_path / ".devloop" / "filestats.json"
    hasher = FileHasher(clock=settled_clock)
    digest = hasher.tree_digest(chart)
    hasher.save(cache)
    assert json.loads(cache.read_text())["version"] == CACHE_VERSION
    assert [p.name for p in cache.parent.iterdir()] == ["filestats.json"], "no temp file left"

    loaded = FileHasher.load(cache, clock=settled_clock)
    assert loaded.load_problem is None
    assert loaded.tree_digest(chart) == digest
    assert (loaded.reads, loaded.hits) == (0, 4)


def test_save_drops_entries_of_deleted_files(tmp_path: Path) -> None:
    gone = write(tmp_path / "gone.txt", "x")
    kept = write(tmp_path / "kept.txt", "y")
    cache = tmp_path / "cache.json"
    first = FileHasher(clock=settled_clock)
    first.file_digest(gone)
    first.file_digest(kept)
    first.save(cache)
    gone.unlink()
    second = FileHasher.load(cache, clock=settled_clock)
    second.save(cache)
    assert list(json.loads(cache.read_text())["entries"]) == [str(kept)]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "unreadable"),
        (json.dumps({"version": 999, "entries": {}}), "cache version 999"),
        (json.dumps({"version": CACHE_VERSION}), "no entries"),
    ],
)
def test_unusable_cache_files_give_an_empty_cache_and_say_why(
    tmp_path: Path, content: str, problem: str
) -> None:
    cache = write(tmp_path / "cache.json", content)
    hasher = FileHasher.load(cache)
    assert len(hasher) == 0
    assert hasher.load_problem is not None and problem in hasher.load_problem
    assert FileHasher.load(tmp_path / "missing.json").load_problem is None


# -- .helmignore -----------------------------------------------------------------------------

# (rules, path, ignored). Directories end with "/". Cases follow Helm's own pkg/ignore tests
# and its loader: the first rule that decides wins, and `!x` ignores whatever is NOT x.
HELMIGNORE_CASES = [
    # globs: no slash -> the base name is matched
    ("helm.txt", "helm.txt", True),
    ("helm.*", "helm.txt", True),
    ("helm.*", "rudder.txt", False),
    ("*.txt", "tiller.txt", True),
    ("*.txt", "cargo/a.txt", True),
    ("ru[c-e]?er.txt", "rudder.txt", True),
    ("ru[^c-e]?er.txt", "rudder.txt", False),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    (".*", ".joonix", True),
    (".*", "helm.txt", False),
    # a slash inside -> the whole relative path is matched, `*` stops at `/`
    ("cargo/*.txt", "cargo/a.txt", True),
    ("cargo/*.txt", "mast/a.txt", False),
    ("cargo/*.txt", "cargo/sub/a.txt", False),
    ("cargo/*", "cargo/sub/", True),
    # directory rules
    ("cargo/", "cargo/", True),
    ("cargo/", "cargo", False),
    ("cargo/", "sub/cargo/", True),
    ("helm.txt/", "helm.txt", False),
    # rooted rules
    ("/a.txt", "a.txt", True),
    ("/a.txt", "cargo/a.txt", False),
    ("/cargo/a.txt", "cargo/a.txt", True),
    # negation, as Helm implements it
    ("!helm.txt", "helm.txt", False),
    ("!helm.txt", "tiller.txt", True),
    ("!*.txt", "cargo/", True),
    ("!cargo/", "mast/", True),
    ("!cargo/", "cargo/", False),
    ("!cargo/", "file.txt", True),  # a dir-only negation ignores every file
    ("!Chart.yaml\n!values.yaml\n*", "Chart.yaml", True),  # Helm's own docs example...
    ("!*.yaml\n*.bak", "values.yaml", False),
    ("!*.yaml\n*.bak", "templates/", True),
    # comments and blanks
    ("# *.txt\n\n   \n", "a.txt", False),
    ("  *.txt  ", "a.txt", True),
    ("foo* # inline comments are not comments", "foo", False),
]


@pytest.mark.parametrize(("rules", "path", "ignored"), HELMIGNORE_CASES)
def test_helmignore_rules(rules: str, path: str, ignored: bool) -> None:
    matcher = HelmIgnore.from_lines(rules.split("\n"), defaults=False)
    assert matcher.ignores(path) is ignored


def test_helmignore_default_rule_ignores_dotfiles_directly_in_templates() -> None:
    matcher = HelmIgnore.from_lines([])
    assert matcher.ignores("templates/.scratch.yaml")
    assert not matcher.ignores("templates/sub/.scratch.yaml")
    assert not matcher.ignores(".helmignore")
    assert not matcher.ignores("templates/deployment.yaml")


@pytest.mark.parametrize(
    ("line", "reason"),
    [("foo/**/bar", "does not support `**`"), ("[z-", "character class"), ("a\\", "backslash")],
)
def test_helmignore_rejects_what_helm_rejects(tmp_path: Path, line: str, reason: str) -> None:
    write(tmp_path / ".helmignore", f"# comment\n{line}\n")
    with pytest.raises(IgnoreFileError) as info:
        helmignore_matcher(tmp_path)
    assert info.value.line == 2
    assert reason in str(info.value)
    assert str(info.value).startswith(f"{tmp_path / '.helmignore'}:2: invalid pattern")


HELM_PARITY_CHARTS = {
    "globs, dirs, rooted": "*.bak\nnotes/\n/secret.txt\ndocs/*.md\n# comment\nci/\n",
    "negation": "!*.yaml\n",
}


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
@pytest.mark.parametrize("case", list(HELM_PARITY_CHARTS))
def test_helmignore_matches_what_helm_packages(
    tool: Callable[[str], str], tmp_path: Path, helm_name: str, case: str
) -> None:
    helm = tool(helm_name)
    chart = make_chart(tmp_path / "demo")
    for rel in [
        "a.bak",
        "notes/todo.txt",
        "secret.txt",
        "sub/secret.txt",
        "docs/guide.md",
        "docs/deep/guide.md",
        "ci/values.yaml",
        "files/data.yaml",
        "templates/.scratch.yaml",
        "templates/sub/.keep.yaml",
        "templates/NOTES.txt",
    ]:
        write(chart / rel, rel)
    write(chart / ".helmignore", HELM_PARITY_CHARTS[case])
    out = tmp_path / "out"
    proc = subprocess.run(
        [helm, "package", str(chart), "-d", str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HELM_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr
    (archive,) = out.iterdir()
    with tarfile.open(archive) as tar:
        packaged = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    ours = set(walk_files(chart, ignore=helmignore_matcher(chart)))
    assert ours == packaged


# -- .dockerignore ---------------------------------------------------------------------------

# (patterns, path, excluded): moby/patternmatcher's MatchesOrParentMatches semantics.
DOCKERIGNORE_CASES = [
    (["*"], "fileutils.go", True),
    (["*.go"], "fileutils.go", True),
    (["*.go"], "pkg/fileutils.go", False),  # `*` does not cross `/`...
    (["**/*.go"], "pkg/deep/fileutils.go", True),  # ...`**` does
    (["**/*.go"], "fileutils.go", True),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),  # a parent folder matches
    (["a*"], "ab/c", True),
    (["a*/b"], "a/c/b", False),
    (["**"], "dir/file", True),
    (["dir/**"], "dir/file", True),
    (["dir/**"], "dir", False),
    (["**/dir2/*"], "dir/dir2/file", True),
    (["**file"], "dir/dir/file", True),
    (["**/file*txt"], "dir/dir/file.txt", True),
    (["**/**/*.txt2"], "dir/dir/file.txt", False),
    (["a[b-d]e"], "ace", True),
    (["a[^b-d]e"], "aze", True),
    (["abc.def"], "abcZdef", False),
    (["abc?def"], "abcZdef", True),
    (["a(b)c/def"], "a(b)c/def", True),
    (["dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["a\\*b"], "a*b", True),
    (["/node_modules"], "node_modules/x.js", True),  # a leading `/` is dropped
    (["./build//out/"], "build/out/a.o", True),  # patterns are cleaned like paths
    ([], "anything", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), DOCKERIGNORE_CASES)
def test_dockerignore_patterns(patterns: list[str], path: str, excluded: bool) -> None:
    lines = DockerIgnore.read_patterns(patterns)
    assert DockerIgnore.from_patterns(lines, dockerfile=None).excluded(path) is excluded


def test_dockerignore_file_syntax() -> None:
    text = "\ufefftest1\n/test2\n/a/file/here\n\nlastfile\n# a comment\n  # not a comment\n! /inverted/abs/path\n"
    assert DockerIgnore.read_patterns(text.split("\n")) == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "# not a comment",
        "!inverted/abs/path",
    ]


def test_dockerignore_rejects_a_lone_exclamation_mark(tmp_path: Path) -> None:
    write(tmp_path / ".dockerignore", "node_modules\n!\n")
    with pytest.raises(IgnoreFileError) as info:
        dockerignore_matcher(tmp_path)
    assert info.value.line == 2
    assert "illegal exclusion pattern" in str(info.value)


def make_context(root: Path, dockerignore: str) -> Path:
    for rel in [
        "Dockerfile",
        "app/main.py",
        "app/main.pyc",
        "app/__pycache__/main.cpython-311.pyc",
        "node_modules/lib/index.js",
        "node_modules/lib/LICENSE",
        "docs/README.md",
        "docs/guide.md",
        "build/Dockerfile.prod",
        ".git/HEAD",
        "README.md",
    ]:
        write(root / rel, rel)
    write(root / ".dockerignore", dockerignore)
    return root


def test_dockerignore_walk_with_exceptions_and_build_files(tmp_path: Path) -> None:
    ctx = make_context(
        tmp_path / "ctx",
        ".git\n**/*.pyc\n**/__pycache__\nnode_modules\n!node_modules/lib/LICENSE\n"
        "docs\n!docs/README.md\n*.md\nDockerfile\n.dockerignore\n",
    )
    assert walk_files(ctx, ignore=dockerignore_matcher(ctx)) == [
        ".dockerignore",  # always sent, whatever the patterns say
        "Dockerfile",
        "app/main.py",
        "build/Dockerfile.prod",
        "docs/README.md",  # the exception wins over `docs`, and `*.md` is top-level only
        "node_modules/lib/LICENSE",  # re-included inside an excluded folder
    ]


def test_dockerignore_prunes_excluded_folders_without_exceptions_inside(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "ctx", "node_modules\n.git\n!src/*.py\n")
    seen: list[str] = []
    matcher = DockerIgnore.for_context(ctx)

    def spy(rel: str) -> bool:
        seen.append(rel)
        return matcher.ignores(rel)

    files = walk_files(ctx, ignore=spy)
    assert "node_modules/" in seen and "node_modules/lib/" not in seen, "pruned, not walked"
    assert ".git/" in seen and ".git/HEAD" not in seen
    assert not any(f.startswith(("node_modules/", ".git/")) for f in files)

    # A wildcard exception could match anywhere below: the folder must be walked.
    ctx2 = make_context(tmp_path / "ctx2", "node_modules\n!**/LICENSE\n")
    assert "node_modules/lib/LICENSE" in walk_files(ctx2, ignore=dockerignore_matcher(ctx2))


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "ctx", "*.md\n")
    write(ctx / "build" / "Dockerfile.prod.dockerignore", "app\n")
    files = walk_files(ctx, ignore=dockerignore_matcher(ctx, dockerfile="build/Dockerfile.prod"))
    assert "README.md" in files and "app/main.py" not in files
    assert "build/Dockerfile.prod" in files


# -- speed -----------------------------------------------------------------------------------


def test_fingerprint_of_2000_files_warm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "tree"
    for i in range(2000):
        write(root / f"dir{i % 40}" / f"sub{i % 7}" / f"file{i}.yaml", f"value: {i}\n" * 50)
    write(root / ".helmignore", "*.bak\n.git/\nnotes/\n")
    ignore = helmignore_matcher(root)
    hasher = FileHasher(clock=settled_clock)

    started = time.perf_counter()
    cold = hasher.tree_digest(root, ignore=ignore)
    cold_s = time.perf_counter() - started
    warm_runs = []
    for _ in range(5):
        started = time.perf_counter()
        assert hasher.tree_digest(root, ignore=ignore) == cold
        warm_runs.append(time.perf_counter() - started)
    assert hasher.reads == 2001, "warm fingerprints read no file"

    cache = tmp_path / "filestats.json"
    hasher.save(cache)
    started = time.perf_counter()
    reloaded = FileHasher.load(cache, clock=settled_clock)
    assert reloaded.tree_digest(root, ignore=ignore) == cold
    next_run_s = time.perf_counter() - started
    assert reloaded.reads == 0

    with capsys.disabled():
        print(
            f"\nfingerprint of 2,001 files (~1.2 MB): cold {cold_s * 1000:.0f} ms, "
            f"warm best {min(warm_runs) * 1000:.1f} ms / median "
            f"{sorted(warm_runs)[2] * 1000:.1f} ms, next process (load cache + warm) "
            f"{next_run_s * 1000:.1f} ms"
        )
