"""Kubernetes validation vocabulary: field errors and the syntax of names, labels, keys.

Pure rules with no I/O, shared by the embedded server and anything that wants to tell a
user, before a cluster does, that a name or label will be refused. Messages follow the
API server's wording (`field.Error` bodies, `IsDNS1123Subdomain`, `IsQualifiedName`,
`IsValidLabelValue`, `IsValidPathSegmentName`) so that a test asserting on the message of
a refusal asserts on what a real cluster says.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Cause reasons of a 422 `Invalid` Status (metav1.CauseType).
REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"

_OMIT = object()


def show_value(value: Any) -> str:
    """A value as the API server prints it in an `Invalid value:` message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FieldError:
    """One `field.Error`: a path, a cause type and the body the server prints."""

    field: str
    reason: str
    body: str

    def __str__(self) -> str:
        return f"{self.field}: {self.body}" if self.field else self.body


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(field, REQUIRED, "Required value" + (f": {detail}" if detail else ""))


def invalid(field: str, value: Any, detail: str = "") -> FieldError:
    body = "Invalid value"
    if value is not _OMIT:
        body += f": {show_value(value)}"
    return FieldError(field, INVALID, body + (f": {detail}" if detail else ""))


def invalid_no_value(field: str, detail: str) -> FieldError:
    return invalid(field, _OMIT, detail)


def not_supported(field: str, value: Any, supported: Iterable[str]) -> FieldError:
    options = ", ".join(json.dumps(s) for s in supported)
    return FieldError(
        field, NOT_SUPPORTED, f"Unsupported value: {show_value(value)}: supported values: {options}"
    )


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError(field, DUPLICATE, f"Duplicate value: {show_value(value)}")


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError(field, FORBIDDEN, f"Forbidden: {detail}")


def too_long(field: str, limit: int) -> FieldError:
    return FieldError(field, TOO_LONG, f"Too long: may not be more than {limit} bytes")


def too_many(field: str, actual: int, limit: int) -> FieldError:
    return FieldError(field, TOO_MANY, f"Too many: {actual}: must have at most {limit} items")


def aggregate(errors: list[FieldError]) -> str:
    """The text of an error list as the server joins it (`[a, b]` for more than one)."""
    if len(errors) == 1:
        return str(errors[0])
    return "[" + ", ".join(str(e) for e in errors) + "]"


# -- syntax -------------------------------------------------------------------------

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _LABEL_FMT + r"(\." + _LABEL_FMT + ")*"
_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_FMT + ")?"
_C_IDENTIFIER_FMT = "[A-Za-z_][A-Za-z0-9_]*"

_LABEL_RE = re.compile(f"^{_LABEL_FMT}$")
_SUBDOMAIN_RE = re.compile(f"^{_SUBDOMAIN_FMT}$")
_DNS1035_RE = re.compile(f"^{_DNS1035_FMT}$")
_QUALIFIED_RE = re.compile(f"^{_QUALIFIED_FMT}$")
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_PORT_NAME_CHARS = re.compile("^[-a-z0-9]+$")
_PORT_NAME_LETTER = re.compile("[a-z]")


def _regex_msg(what: str, example: str, fmt: str) -> str:
    return f"{what} (e.g. {example}, regex used for validation is '{fmt}')"


def dns1123_label(value: str) -> list[str]:
    out = []
    if len(value) > DNS1123_LABEL_MAX:
        out.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _LABEL_RE.match(value):
        out.append(
            _regex_msg(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character",
                "'my-name',  or '123-abc'",
                _LABEL_FMT,
            )
        )
    return out


def dns1123_subdomain(value: str) -> list[str]:
    out = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        out.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _SUBDOMAIN_RE.match(value):
        out.append(
            _regex_msg(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character",
                "'example.com'",
                _SUBDOMAIN_FMT,
            )
        )
    return out


def dns1035_label(value: str) -> list[str]:
    out = []
    if len(value) > DNS1123_LABEL_MAX:
        out.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1035_RE.match(value):
        out.append(
            _regex_msg(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character",
                "'my-name',  or 'abc-123'",
                _DNS1035_FMT,
            )
        )
    return out


def path_segment(value: str) -> list[str]:
    """Names of kinds validated only as URL path segments (RBAC, among others)."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: an optional DNS subdomain prefix and a name part."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        out = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            out = ["prefix part must be non-empty"]
        else:
            out = ["prefix part " + m for m in dns1123_subdomain(prefix)]
    else:
        return [
            "a qualified name "
            + _regex_msg(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character",
                "'MyName',  or 'my.name',  or '123-abc'",
                _QUALIFIED_FMT,
            )
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        out.append("name part must be non-empty")
    elif len(name) > 63:
        out.append("name part must be no more than 63 bytes")
    if name and not _QUALIFIED_RE.match(name):
        out.append(
            "name part "
            + _regex_msg(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character",
                "'MyName',  or 'my.name',  or '123-abc'",
                _QUALIFIED_FMT,
            )
        )
    return out


def label_value(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 bytes")
    if not _LABEL_VALUE_RE.match(value):
        out.append(
            _regex_msg(
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character",
                "'MyValue',  or 'my_value',  or '12345'",
                _LABEL_VALUE_FMT,
            )
        )
    return out


def port_name(value: str) -> list[str]:
    """An IANA service name (container and service port names)."""
    out = []
    if len(value) > 15:
        out.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.match(value):
        out.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        out.append("must not contain consecutive hyphens")
    if not _PORT_NAME_LETTER.search(value):
        out.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        out.append("must not begin or end with a hyphen")
    return out


def env_var_name(value: str) -> list[str]:
    """Kubernetes 1.32+ (RelaxedEnvironmentVariableValidation, on by default)."""
    if value and all(32 <= ord(ch) <= 126 and ch != "=" for ch in value):
        return []
    return [
        "a valid environment variable name must consist only of printable ASCII characters "
        "other than '='"
    ]


NameCheck = Callable[[str], list[str]]


def check_labels(labels: Any, field: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(labels, dict):
        return errs
    for key, value in labels.items():
        for msg in qualified_name(str(key)):
            errs.append(invalid(field, key, msg))
        if not isinstance(value, str):
            continue
        for msg in label_value(value):
            errs.append(invalid(f"{field}", value, msg))
    return errs


TOTAL_ANNOTATION_SIZE = 256 * 1024


def check_annotations(annotations: Any, field: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(annotations, dict):
        return errs
    total = 0
    for key, value in annotations.items():
        for msg in qualified_name(str(key).lower()):
            errs.append(invalid(field, key, msg))
        total += len(str(key)) + len(str(value).encode())
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(field, TOTAL_ANNOTATION_SIZE))
    return errs


def check_selector_labels(selector: Any, field: str) -> list[FieldError]:
    """A LabelSelector's syntax: keys, values and operators."""
    errs: list[FieldError] = []
    if not isinstance(selector, dict):
        return errs
    errs += check_labels(selector.get("matchLabels"), f"{field}.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        path = f"{field}.matchExpressions[{i}]"
        if not isinstance(expr, dict):
            continue
        op = expr.get("operator")
        values = expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(
                    required(
                        f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'"
                    )
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    forbidden(
                        f"{path}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errs.append(
                not_supported(f"{path}.operator", op, ["In", "NotIn", "Exists", "DoesNotExist"])
            )
        for msg in qualified_name(str(expr.get("key", ""))):
            errs.append(invalid(f"{path}.key", expr.get("key", ""), msg))
    return errs


def selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects `labels`."""
    if not isinstance(selector, dict):
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key")
        op = expr.get("operator")
        values = expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_is_empty(selector: Any) -> bool:
    return not isinstance(selector, dict) or (
        not selector.get("matchLabels") and not selector.get("matchExpressions")
    )
