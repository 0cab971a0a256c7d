"""Label and field selectors, parsed from query strings and matched against objects.

Label selectors follow the Kubernetes grammar, including the set-based forms Helm
generates (`app in (a,b)`, `!tier`, `env notin (x)`); field selectors support `=`,
`==` and `!=` on any dotted path of the object (`metadata.name`, `spec.nodeName`,
`status.phase`, `involvedObject.uid`, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that cannot be parsed; the server answers 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
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
        return False


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        m = re.fullmatch(r"!\s*([^\s,!=()]+)", part)
        if m:
            reqs.append(Requirement(m.group(1), "!"))
            continue
        m = re.fullmatch(r"([^\s,!=()]+)\s+(in|notin)\s*\(([^)]*)\)", part)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(2), values))
            continue
        m = re.fullmatch(r"([^\s,!=()]+)\s*(==|=|!=)\s*([^\s,!=()]*)", part)
        if m:
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append(Requirement(m.group(1), op, (m.group(3),)))
            continue
        m = re.fullmatch(r"([^\s,!=()]+)", part)
        if m:
            reqs.append(Requirement(m.group(1), "exists"))
            continue
        raise SelectorError(f"unable to parse requirement: {part!r}")
    return reqs


def labels_match(reqs: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


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


def format_label_selector(sel: Mapping[str, Any] | None) -> str:
    """Text form of a LabelSelector, as the scale subresource reports it."""
    parts: list[str] = []
    for r in selector_from_label_selector(sel) or []:
        if r.op == "=":
            parts.append(f"{r.key}={r.values[0]}")
        elif r.op in ("in", "notin"):
            parts.append(f"{r.key} {r.op} ({','.join(r.values)})")
        elif r.op == "exists":
            parts.append(r.key)
        elif r.op == "!":
            parts.append(f"!{r.key}")
    return ",".join(parts)


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


def field_selector_name(text: str | None) -> str | None:
    """The name a `metadata.name=X` field selector pins, to answer it by key lookup."""
    if not text:
        return None
    for part in text.split(","):
        m = re.fullmatch(r"\s*metadata\.name\s*==?\s*([^\s,]+)\s*", part)
        if m:
            return m.group(1)
    return None
