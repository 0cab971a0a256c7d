"""Decoding request bodies (JSON and YAML) within bounds a hostile client cannot stretch.

Owns the limits every decoded body obeys before the server looks at it: nesting depth
(`MAX_DEPTH`) and the size of the document once YAML aliases are expanded (at most
`MAX_BODY`, the same limit as a body sent as JSON). A YAML "billion laughs" body of a few
hundred bytes, or a body nested a million levels deep, is refused with a 4xx Status instead
of filling memory, overflowing the stack (libyaml's C composer crashes the process on deep
nesting) or answering 500.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from pytest_devloop.embedded import errors

MAX_BODY = 3 * 1024 * 1024
# Real manifests nest a few dozen levels (a CRD's openAPIV3Schema adds two per property
# level); the server's own tree walks stay far below Python's recursion limit at this depth.
MAX_DEPTH = 200

_C_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def too_deep() -> errors.ApiError:
    return errors.bad_request(
        f"error decoding request body: the document is nested more than {MAX_DEPTH} levels deep"
    )


def expanded_too_large() -> errors.ApiError:
    return errors.ApiError(
        413,
        "RequestEntityTooLarge",
        f"Request entity too large: the document expands (YAML aliases) beyond the limit "
        f"of {MAX_BODY} bytes",
    )


def load_json(raw: bytes | str) -> Any:
    """json.loads, with nesting beyond MAX_DEPTH refused as 400 (never a RecursionError)."""
    try:
        data = json.loads(raw)
    except RecursionError as e:
        raise too_deep() from e
    check_shape(data)
    return data


def load_yaml(raw: bytes | str) -> Any:
    """One YAML document, refused when too deep or when its aliases expand beyond MAX_BODY."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    head = text.lstrip()[:1]
    if head in ("{", "["):
        # JSON is YAML, and what clients send as apply-patch+yaml is JSON in practice:
        # the JSON parser is faster and has no aliases. Anything it rejects may still be
        # YAML flow style, so that falls through to the YAML parser.
        try:
            return load_json(text)
        except ValueError:
            pass
    loader = _C_LOADER
    if _bracket_depth(text) > MAX_DEPTH:
        # libyaml is quadratic on deep flow nesting and its composer recurses on the C
        # stack; the pure-Python loader stops at Python's recursion limit instead.
        loader = _BoundedLoader
    try:
        data = yaml.load(text, Loader=loader)
    except (RecursionError, _TooDeep) as e:
        raise too_deep() from e
    except yaml.YAMLError as e:
        # Newer libyaml builds (PyYAML 6.0.4 wheels) stop deep block nesting themselves:
        # the same refusal, in the server's words, whichever libyaml is installed.
        if "maximum nesting depth" in str(e):
            raise too_deep() from e
        raise
    check_shape(data)
    return data


class _TooDeep(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """The pure-Python safe loader, stopping at the first flow collection too deep.

    Its scanner looks ahead through every open flow collection with a cost that grows
    with their number, so a million `[` would take seconds before the composer's
    recursion limit is reached: stop as soon as the limit is passed.
    """

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _TooDeep
        super().fetch_flow_collection_start(TokenClass)


def _bracket_depth(text: str) -> int:
    """Deepest run of unclosed flow brackets, quotes ignored (an upper bound of flow depth)."""
    opened = text.count("[") + text.count("{")
    if opened <= MAX_DEPTH:
        return opened
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    break
        elif ch in "]}" and depth:
            depth -= 1
    return deepest


def check_shape(data: Any, *, limit_size: bool = True) -> None:
    """Refuse a decoded document deeper than MAX_DEPTH or larger than MAX_BODY expanded.

    YAML aliases make the parsed value a graph whose shared parts are stored once but
    are written out (and copied) once per reference: size and height are counted per
    reference, with each shared part measured only once, so a bomb is measured without
    expanding it. A document that contains itself can never be written out and is refused.
    """
    measured: dict[int, tuple[int, int]] = {}  # id -> (expanded size, height)
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]  # (container, children measured?)
    if not isinstance(data, (dict, list)):
        return
    while stack:
        value, ready = stack.pop()
        key = id(value)
        children = list(value.values()) if isinstance(value, dict) else value
        if ready:
            on_path.discard(key)
            size, height = 2, 1
            for child in children:
                child_size, child_height = _measure(child, measured)
                size += child_size + 1
                height = max(height, child_height + 1)
            if isinstance(value, dict):
                size += sum(len(str(k)) + 3 for k in value)
            if limit_size and size > MAX_BODY:
                raise expanded_too_large()
            if height > MAX_DEPTH:
                raise too_deep()
            measured[key] = (size, height)
            continue
        if key in measured:
            continue
        if key in on_path:
            raise errors.bad_request(
                "error decoding request body: the document refers to itself (YAML alias cycle)"
            )
        on_path.add(key)
        stack.append((value, True))
        stack.extend(
            (child, False)
            for child in children
            if isinstance(child, (dict, list)) and id(child) not in measured
        )


def _measure(value: Any, measured: dict[int, tuple[int, int]]) -> tuple[int, int]:
    if isinstance(value, (dict, list)):
        return measured[id(value)]
    if isinstance(value, str):
        return len(value) + 2, 0
    return len(str(value)), 0
