"""Label and field selectors: one grammar, one matcher, for the plugin and the embedded server.

Label selectors follow `labels.Parse` of Kubernetes' apimachinery: equality (`a=b`,
`a==b`, `a!=b`), sets (`a in (x,y)`, `a notin (x)`), existence (`a`, `!a`) and the
numeric comparisons `a>3` and `a<3` (which never match a missing or non-integer label).
A `metav1.LabelSelector` (matchLabels + matchExpressions) maps onto the same
requirements. Field selectors support `=`, `==` and `!=` on a dotted path of the object
(`metadata.name`, `spec.nodeName`, `status.phase`, `involvedObject.uid`, ...).

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that cannot be parsed; the API server answers 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "=":
            return present and labels[self.key] == self.values[0]
        if self.op == "!=":
            return not present or labels[self.key] != self.values[0]
        if self.op == "in":
            return present and labels[self.key] in self.values
        if self.op == "notin":
            return not present or labels[self.key] not in self.values
        if self.op in ("gt", "lt"):
            if not present:
                return False
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except ValueError:
                return False
            return have > want if self.op == "gt" else have < want
        return False

    def text(self) -> str:
        """The requirement in selector syntax; set values sorted, as `labels.Selector.String`."""
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(sorted(self.values))})"
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        return f"{self.key}{'>' if self.op == 'gt' else '<'}{self.values[0]}"


# -- the label-selector lexer and parser ----------------------------------------------

_SPECIAL = "!=(),<>"
_TOKEN = re.compile(r"\s*(==|!=|[=(),!<>]|[^\s!=(),<>]+)")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern accepts every non-space character
            raise SelectorError(f"unable to parse requirement: {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _check_key(key: str, selector: str) -> None:
    prefix, sep, name = key.rpartition("/")
    ok = bool(name) and len(name) <= 63 and _QUALIFIED_NAME.fullmatch(name) is not None
    if sep:
        ok = ok and 0 < len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix) is not None
    if not ok:
        raise SelectorError(
            f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}"
        )


def _check_value(value: str, selector: str) -> None:
    if value and (len(value) > 63 or _QUALIFIED_NAME.fullmatch(value) is None):
        raise SelectorError(
            f"unable to parse requirement: invalid label value {value!r} in selector {selector!r}"
        )


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise SelectorError(f"unable to parse requirement: unexpected end of {self.text!r}")
        self.i += 1
        return tok

    def identifier(self) -> str:
        tok = self.take()
        if tok in _SPECIAL or tok in ("==", "!="):
            raise SelectorError(
                f"unable to parse requirement: found {tok!r}, expected an identifier "
                f"in {self.text!r}"
            )
        return tok

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            key = self.identifier()
            _check_key(key, self.text)
            return Requirement(key, "!")
        key = self.identifier()
        _check_key(key, self.text)
        tok = self.peek()
        if tok is None or tok == ",":
            return Requirement(key, "exists")
        self.take()
        if tok in ("=", "==", "!="):
            nxt = self.peek()
            value = "" if nxt is None or nxt == "," else self.identifier()
            _check_value(value, self.text)
            return Requirement(key, "!=" if tok == "!=" else "=", (value,))
        if tok in (">", "<"):
            value = self.identifier()
            try:
                int(value)
            except ValueError:
                raise SelectorError(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must "
                    f"be an integer: {value!r} in {self.text!r}"
                ) from None
            return Requirement(key, "gt" if tok == ">" else "lt", (value,))
        if tok in ("in", "notin"):
            if self.take() != "(":
                raise SelectorError(f"unable to parse requirement: expected '(' in {self.text!r}")
            values: list[str] = []
            while True:
                nxt = self.peek()
                if nxt == ")":
                    self.take()
                    break
                if nxt == ",":
                    self.take()
                    values.append("")
                    continue
                value = self.identifier()
                _check_value(value, self.text)
                values.append(value)
                if self.peek() == ",":
                    self.take()
            values = [v for v in values if v] or values
            if not values:
                raise SelectorError(
                    "unable to parse requirement: for 'in', 'notin' operators, values set "
                    f"can't be empty in {self.text!r}"
                )
            return Requirement(key, tok, tuple(values))
        raise SelectorError(
            f"unable to parse requirement: found {tok!r}, expected one of "
            f"'=', '==', '!=', 'in', 'notin', '>', '<' in {self.text!r}"
        )

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while self.peek() is not None:
            reqs.append(self.requirement())
            tok = self.peek()
            if tok is None:
                break
            if tok != ",":
                raise SelectorError(
                    f"unable to parse requirement: found {tok!r}, expected ',' in {self.text!r}"
                )
            self.take()
            if self.peek() is None:
                raise SelectorError(f"unable to parse requirement: trailing ',' in {self.text!r}")
        return reqs


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Requirements of a label-selector string; raises `SelectorError` for bad syntax."""
    if not text or not text.strip():
        return []
    return _Parser(text).parse()


def labels_match(reqs: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def matches(selector: str | None, labels: Mapping[str, str] | None) -> bool:
    """Does a label-selector string select these labels? Raises `SelectorError` when bad."""
    return labels_match(parse_label_selector(selector), labels)


def selector_from_label_selector(sel: Mapping[str, Any] | None) -> list[Requirement] | None:
    """Requirements of a `metav1.LabelSelector` (matchLabels + matchExpressions).

    Returns None for a missing selector (matches nothing, as for a workload without
    one) and [] for an empty selector (matches everything).
    """
    if sel is None:
        return None
    reqs: list[Requirement] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append(Requirement(str(k), "=", (str(v),)))
    for expr in sel.get("matchExpressions") or []:
        op = str(expr.get("operator", ""))
        values = tuple(str(v) for v in expr.get("values") or ())
        key = str(expr.get("key", ""))
        mapped = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(op)
        if mapped is None:
            raise SelectorError(f"invalid label selector operator {op!r}")
        reqs.append(Requirement(key, mapped, values))
    return reqs


def requirements_of(selector: Mapping[str, Any] | None) -> list[Requirement] | None:
    """Requirements of a LabelSelector or of a plain label map (a Service's `spec.selector`)."""
    if selector is None:
        return None
    if selector and "matchLabels" not in selector and "matchExpressions" not in selector:
        return [Requirement(str(k), "=", (str(v),)) for k, v in selector.items()]
    return selector_from_label_selector(selector)


def format_label_selector(sel: Mapping[str, Any] | None) -> str:
    """Text form of a LabelSelector, in its own order, as the scale subresource reports it."""
    parts: list[str] = []
    for r in selector_from_label_selector(sel) or []:
        if r.op in ("in", "notin"):
            parts.append(f"{r.key} {r.op} ({','.join(r.values)})")
        else:
            parts.append(r.text())
    return ",".join(parts)


def canonical(reqs: list[Requirement]) -> str:
    """One text per meaning: requirements and set values sorted, `==` written `=`."""
    return ",".join(sorted(r.text() for r in reqs))


def normalize(selector: Mapping[str, Any] | str | None) -> str:
    """Canonical text of a selector string, a LabelSelector or a plain label map.

    Two spellings of one selector give the same text. A string that does not parse is
    returned with its whitespace collapsed, so that records still compare.
    """
    if selector is None:
        return ""
    if isinstance(selector, Mapping):
        return canonical(requirements_of(selector) or [])
    try:
        return canonical(parse_label_selector(selector))
    except SelectorError:
        return " ".join(selector.split())


# -- field selectors ------------------------------------------------------------------


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool] | None:
    if not text:
        return None
    terms: list[tuple[str, bool, str]] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise SelectorError(f"invalid field selector: {part!r}")
        terms.append((m.group(1), m.group(2) == "!=", m.group(3)))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, path) == value) != negate for path, negate, value in terms)

    return match


def field_selector_fields(text: str | None) -> list[str]:
    """The field paths a field selector names (for per-kind support checks)."""
    if not text:
        return []
    out: list[str] = []
    for raw in text.split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(==|=|!=).*", raw)
        if m:
            out.append(m.group(1))
    return out


def field_selector_name(text: str | None) -> str | None:
    """The name a `metadata.name=X` field selector pins, to answer it by key lookup."""
    if not text:
        return None
    for part in text.split(","):
        m = re.fullmatch(r"\s*metadata\.name\s*==?\s*([^\s,]+)\s*", part)
        if m:
            return m.group(1)
    return None
