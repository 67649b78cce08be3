"""Symbolic answer comparison for the math query set, on the project's whitelist parser (no ``eval``).

Model replies are untrusted text, so they are parsed with :mod:`langchain_slm_router.math_parsing` (which builds
sympy objects from whitelisted tokens) rather than ``sympify``/``parse_expr``.
"""

from __future__ import annotations

import re

import sympy as sp

from langchain_slm_router.math_parsing import ParseDecline, ParseLimits, parse_expression

_PLAIN_NUMBER = re.compile(r"^-?\d[\d,]*(\.\d+)?(\s*/\s*\d+)?$")
_LIMITS = ParseLimits(max_tokens=120, max_exponent=1000, max_factorial=100, max_bits=4000)


def _parse(text: str) -> sp.Expr:
    return parse_expression(text.strip().lower().replace("**", "^"), _LIMITS).expr


def _solution_set(text: str) -> tuple[str, list[sp.Expr]] | None:
    if "=" not in text:
        return None
    var, _, rest = text.partition("=")
    if rest.strip().lower() in ("no solution", "no solutions", "no real solution"):
        return var.strip().lower(), []
    rest = rest.replace(" or ", ",").replace(" and ", ",")
    parts = [p for p in (q.strip() for q in rest.split(",")) if p]
    values: list[sp.Expr] = []
    for part in parts:
        part = part.partition("=")[2] if "=" in part else part  # "x = 2, x = -2"
        values.append(_parse(part))
    return var.strip().lower(), values


def _equal(a: sp.Expr, b: sp.Expr) -> bool:
    diff = a - b
    if diff == 0 or sp.expand(diff) == 0:
        return True
    return bool(sp.simplify(diff) == 0)


def _same_form(got: sp.Expr, expected: sp.Expr) -> bool:
    """A reply must be as reduced as the reference: echoing the question (``667 - 71*5`` for ``312``,
    ``x^2 - 64`` for ``(x - 8)*(x + 8)``) is equal in value but is not an answer."""
    if isinstance(expected, (sp.Mul, sp.Pow)) and expected.free_symbols and isinstance(got, sp.Add):
        return False
    return sp.count_ops(got) <= sp.count_ops(expected) + 1


def answers_match(got: str, expected: str, *, require_form: bool = True) -> bool:
    """Whether ``got`` equals the reference ``expected`` (solution sets as sets, ``+ C`` ignored).

    With ``require_form`` (default) a reply must also be as reduced as the reference (see :func:`_same_form`).
    """
    try:
        exp_set = _solution_set(expected)
        if exp_set is not None:
            got_set = _solution_set(got)
            if got_set is None:
                if len(exp_set[1]) != 1:
                    return False
                got_set = (exp_set[0], [_parse(got)])
            if got_set[0] != exp_set[0] or len(got_set[1]) != len(exp_set[1]):
                return False
            return all(any(_equal(g, e) for g in got_set[1]) for e in exp_set[1])
        exp_text, got_text = expected.strip(), got.strip()
        for text_suffix in ("+ C", "+C", "+ c", "+c"):
            if exp_text.endswith(text_suffix):
                exp_text = exp_text[: -len(text_suffix)]
            if got_text.endswith(text_suffix):
                got_text = got_text[: -len(text_suffix)]
        if expected.strip().endswith("+ C"):
            diff = sp.simplify(_parse(got_text) - _parse(exp_text))
            return not diff.free_symbols  # antiderivatives may differ by a constant
        got_expr, exp_expr = _parse(got_text), _parse(exp_text)
        if require_form and not _same_form(got_expr, exp_expr):
            return False
        if require_form and exp_expr.is_Number and not _PLAIN_NUMBER.match(got_text.strip()):
            return False
        return _equal(got_expr, exp_expr)
    except (ParseDecline, ValueError, TypeError, ZeroDivisionError, RecursionError, sp.SympifyError):
        return False
