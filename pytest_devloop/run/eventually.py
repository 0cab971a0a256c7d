"""Waiting for a state that converges: `eventually(fn)` and the message when it does not.

Owns the retry policy behind the `eventually` fixture and the failure message that
shows what was waited for (the lambda's source text), the last value or exception, and
how long it waited. Built on tenacity, with the clock and the sleep injectable so the
policy is tested without real sleeps: tenacity's own stop and wait helpers read
`time.monotonic()`, so the stop and wait used here are closures over `clock`.

What counts as "not yet": an AssertionError or a LookupError (the `cluster` raises it
for an object that does not exist yet), or a falsy return value, None included, so
`eventually(lambda: cluster.get("Deployment", "web"))` waits for the Deployment. One
exception: a plain `def` that never returns a value is written in assertion style, and
its None means success.
"""

from __future__ import annotations

import ast
import dis
import inspect
import linecache
import reprlib
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import tenacity

__all__ = ["eventually"]

T = TypeVar("T")

_REPR = reprlib.Repr()
_REPR.maxstring = 160
_REPR.maxother = 160
_REPR.maxlist = _REPR.maxdict = 8
_MAX_SOURCE = 300


class Eventually(Protocol):
    """The type of the `eventually` fixture, for annotations in users' tests."""

    def __call__(
        self,
        fn: Callable[[], T],
        *,
        timeout: float = ...,
        interval: float = ...,
        retry_on: tuple[type[BaseException], ...] = ...,
        clock: Callable[[], float] = ...,
        sleep: Callable[[float], None] = ...,
    ) -> T: ...


def eventually(
    fn: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (AssertionError, LookupError),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn` until it returns a truthy value (returned) or `timeout` seconds pass.

    Retried: the exceptions in `retry_on` and falsy values (see the module docstring);
    any other exception propagates at once. Calls are `interval` seconds apart, and
    the last one happens at the deadline. On timeout: AssertionError with the source of
    `fn`, the last value or exception, the number of tries and the elapsed time; the
    last exception is chained.
    """
    __tracebackhide__ = True  # the failure is the test's line, not this loop's
    start = clock()
    deadline = start + timeout
    assertion_style = _returns_nothing(fn)

    def not_yet(value: Any) -> bool:
        if value is None:
            return not assertion_style
        return not value

    final_attempt = 0  # set once the next try is the one at the deadline

    def stop(state: tenacity.RetryCallState) -> bool:
        return bool(final_attempt and state.attempt_number >= final_attempt) or (
            clock() >= deadline
        )

    def wait(state: tenacity.RetryCallState) -> float:
        # Never sleep past the deadline: the last try happens at it. The attempt number,
        # not the clock, ends the loop after that try: `now + (deadline - now)` can round
        # to just below `deadline` and would buy a stray extra try.
        nonlocal final_attempt
        remaining = deadline - clock()
        if remaining <= interval and not final_attempt:
            final_attempt = state.attempt_number + 1
        return max(0.0, min(interval, remaining))

    retrying = tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception_type(retry_on) | tenacity.retry_if_result(not_yet),
        sleep=sleep,
    )
    try:
        return retrying(fn)
    except tenacity.RetryError as e:
        attempt = e.last_attempt
        error = attempt.exception()
        lines = [
            f"eventually: not true after {_seconds(clock() - start)} "
            f"({attempt.attempt_number} {'try' if attempt.attempt_number == 1 else 'tries'}): "
            f"{_describe(fn)}"
        ]
        if error is not None:
            lines.append(f"  last error: {type(error).__name__}: {_shorten(str(error))}")
        else:
            value = attempt.result()
            lines.append(f"  last value: {_value(value)}")
            lines += _operands(fn)
            if value is None:
                lines.append(
                    "  (a None result means not yet: return True from a check that only asserts)"
                )
        raise AssertionError("\n".join(lines)) from error


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _shorten(text: str, limit: int = _MAX_SOURCE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(value: Any) -> str:
    return _shorten(_REPR.repr(value), 200)


def _returns_nothing(fn: Callable[..., Any]) -> bool:
    """True for a plain `def` whose every return is bare (an assertion-style check)."""
    code = getattr(fn, "__code__", None)
    if code is None or getattr(fn, "__name__", "") == "<lambda>":
        return False
    if code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE):
        return False
    previous = None
    for ins in dis.get_instructions(code):
        if ins.opname == "RETURN_CONST" and ins.argval is not None:  # Python ≥ 3.12
            return False
        if ins.opname == "RETURN_VALUE" and not (
            previous is not None and previous.opname == "LOAD_CONST" and previous.argval is None
        ):
            return False
        previous = ins
    return True


# -- what was waited for ----------------------------------------------------------------------


def _lambda_node(fn: Callable[..., Any]) -> tuple[ast.Lambda, str] | None:
    """The lambda's AST node and its file's source, found by the position of its body.

    The whole file is parsed (this runs only on a timeout): `inspect.getsource` gives a
    lambda's lines, which are often not a parsable statement on their own.
    """
    code = getattr(fn, "__code__", None)
    if code is None or getattr(fn, "__name__", "") != "<lambda>":
        return None
    source = "".join(linecache.getlines(code.co_filename))
    if not source:
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    # The first instruction after RESUME sits at the start of the body's first operand.
    first = next(
        (
            (line, col)
            for line, _, col, _ in list(code.co_positions())[1:]
            if line is not None and col is not None
        ),
        None,
    )
    candidates = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno
    ]
    if first is not None and len(candidates) > 1:
        candidates = [
            n
            for n in candidates
            if (n.body.lineno, n.body.col_offset)
            <= first
            <= (n.body.end_lineno or n.body.lineno, n.body.end_col_offset or 0)
        ]
    if len(candidates) != 1:
        return None
    return candidates[0], source


def _describe(fn: Callable[..., Any]) -> str:
    found = _lambda_node(fn)
    if found is not None:
        node, source = found
        text = ast.get_source_segment(source, node)
        if text:
            return _shorten(text)
    name = getattr(fn, "__qualname__", None)
    return f"{name}()" if name else _shorten(repr(fn))


def _operands(fn: Callable[..., Any]) -> list[str]:
    """`where <left> = <value>` for a lambda comparing one expression with another.

    The comparison only says False; the operand is what the reader wants
    (`ready_replicas` was 1). It is evaluated once more, after the timeout, in the
    lambda's globals and closure; any error leaves the line out.
    """
    found = _lambda_node(fn)
    if found is None:
        return []
    node, source = found
    body = node.body
    if not isinstance(body, ast.Compare) or len(body.comparators) != 1:
        return []
    closure = getattr(fn, "__closure__", None) or ()
    scope = dict(getattr(fn, "__globals__", {}))
    for name, cell in zip(fn.__code__.co_freevars, closure, strict=False):
        try:
            scope[name] = cell.cell_contents
        except ValueError:
            continue  # an empty cell
    lines = []
    for operand in (body.left, body.comparators[0]):
        try:
            ast.literal_eval(operand)
            continue  # a literal says nothing new
        except ValueError:
            pass
        text = ast.get_source_segment(source, operand)
        try:
            value = eval(compile(ast.Expression(operand), "<eventually>", "eval"), scope)
        except Exception:
            continue
        lines.append(f"  where {_shorten(text or '?', 120)} = {_value(value)} (read again)")
    return lines
