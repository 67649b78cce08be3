"""Whitelist tokenizer and recursive-descent parser that builds sympy objects directly (no ``eval``).

This module is the only place where user text becomes a sympy expression, and it never hands text to
``eval``, ``exec``, ``sympify`` or ``parse_expr``: every token is matched against a fixed whitelist and the
parser calls sympy constructors (``Integer``, ``Rational``, ``Symbol``, ``Add``, ``Mul``, ``Pow``, ``sin``,
...) itself. Anything outside the grammar raises :class:`ParseDecline`, which the engine turns into a
decline.

Grammar (after the engine has lower-cased the text and replaced word operators such as ``plus``)::

    expr     := term (("+" | "-") term)*
    term     := unary (("*" | "/") unary | implicit)*      # implicit: "3x", "2(x+1)", "(x-1)(x+1)", "2 sin(x)"
    unary    := ("+" | "-") unary | power
    power    := postfix ("^" unary)?                      # right-associative: 2^3^2 == 2^(3^2); "**" == "^"
    postfix  := primary "!"?                              # factorial
    primary  := NUMBER | CONSTANT | VARIABLE | "(" expr ")" | FUNC "(" expr ")" | FUNC atom

    NUMBER   := digits ["." digits] | "." digits | 1,234,567 (thousands separators)
    CONSTANT := "pi" | "e"
    VARIABLE := one letter a-z other than "e"
    FUNC     := sin cos tan cot sec csc asin acos atan (arcsin arccos arctan) sinh cosh tanh exp log ln
                sqrt cbrt abs factorial

Bounds enforced while building (each violation is a :class:`ParseDecline`, never a long computation):
the token count (expression size), the nesting depth, the size of every integer exponent, the factorial
argument, and the number of bits of every exact rational number produced by ``+ - * / ^ !`` (checked *before*
sympy computes it, so ``9^9^9^9`` or ``factorial(10^9)`` never start).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

__all__ = ["ParseDecline", "ParseLimits", "ParsedExpr", "parse_expression", "tokenize", "FUNCTIONS"]


class ParseDecline(Exception):
    """The text is outside the whitelisted grammar or over a bound; ``reason`` says which."""

    def __init__(self, reason: str, code: str = "not_math") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # "not_math" (outside the grammar) or "bounds" (over a size bound)


@dataclass(frozen=True)
class ParseLimits:
    """Bounds applied while parsing and building the sympy expression."""

    max_tokens: int = 200
    max_depth: int = 40
    max_exponent: int = 10_000
    max_factorial: int = 1000
    max_bits: int = 13_000  # ~3900 decimal digits; stays under CPython's 4300-digit int<->str limit
    max_number_chars: int = 60


@dataclass
class ParsedExpr:
    """A parsed expression with what the engine needs to classify and format it."""

    expr: sp.Expr
    top: str  # operator at the root of the parse tree: "num", "sym", "+", "*", "/", "^", "neg", "!", or a FUNC
    ops: set[str] = field(default_factory=set)
    has_decimal: bool = False
    tokens: int = 0


def _cbrt(arg: sp.Expr) -> sp.Expr:
    return sp.root(arg, 3)


def _log10(arg: sp.Expr) -> sp.Expr:
    return sp.log(arg, 10)


FUNCTIONS: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec, "csc": sp.csc,
    "asin": sp.asin, "acos": sp.acos, "atan": sp.atan,
    "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh,
    "exp": sp.exp, "log": sp.log, "ln": sp.log, "log10": _log10,
    "sqrt": sp.sqrt, "cbrt": _cbrt, "abs": sp.Abs, "factorial": sp.factorial,
}

_CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "e": sp.E}

# One token per match; the final alternative catches any other character so the scan can decline on it.
_TOKEN_RE = re.compile(
    r"\s*(?:"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<name>log10|[a-z]+)"
    r"|(?P<op>\*\*|[-+*/^()!])"
    r"|(?P<bad>\S)"
    r")"
)


@dataclass(frozen=True)
class Token:
    kind: str  # "num" | "name" | "op"
    text: str


def tokenize(text: str, limits: ParseLimits) -> list[Token]:
    """Split ``text`` into whitelisted tokens; decline on any other character, name or size overflow."""
    tokens: list[Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:  # only trailing white space is left
            if text[pos:].strip():
                raise ParseDecline(f"unexpected text at {pos}")
            break
        pos = m.end()
        if m.group("bad") is not None:
            raise ParseDecline(f"character {m.group('bad')!r} is not part of the math grammar")
        if m.group("num") is not None:
            raw = m.group("num").replace(",", "")
            if len(raw) > limits.max_number_chars:
                raise ParseDecline("number literal too long", "bounds")
            tokens.append(Token("num", raw))
        elif m.group("name") is not None:
            name = m.group("name")
            if name not in FUNCTIONS and name not in _CONSTANTS and len(name) != 1:
                raise ParseDecline(f"word {name!r} is not part of the math grammar")
            tokens.append(Token("name", name))
        else:
            op = m.group("op")
            tokens.append(Token("op", "^" if op == "**" else op))
        if len(tokens) > limits.max_tokens:
            raise ParseDecline(f"expression longer than {limits.max_tokens} tokens", "bounds")
    if not tokens:
        raise ParseDecline("empty expression")
    return tokens


def _bits(e: sp.Expr) -> int:
    """Bits of the largest exact rational coefficient in ``e`` (cheap, shallow)."""
    if e.is_Rational:
        return max(abs(e.p).bit_length(), e.q.bit_length())  # type: ignore[attr-defined]
    if e.is_Add or e.is_Mul:
        return max((_bits(a) for a in e.args if a.is_Rational or a.is_Mul or a.is_Add), default=0)
    return 0


class _Parser:
    def __init__(self, tokens: list[Token], limits: ParseLimits) -> None:
        self.toks = tokens
        self.i = 0
        self.lim = limits
        self.depth = 0
        self.ops: set[str] = set()
        self.has_decimal = False

    # -- helpers -------------------------------------------------------------------------------------------
    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def expect_op(self, op: str) -> None:
        tok = self.peek()
        if tok is None or tok.kind != "op" or tok.text != op:
            raise ParseDecline(f"expected {op!r}")
        self.i += 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.lim.max_depth:
            raise ParseDecline(f"expression nested deeper than {self.lim.max_depth}", "bounds")

    def check_size(self, e: sp.Expr) -> sp.Expr:
        if e is sp.zoo or e is sp.nan or e.is_infinite:
            raise ParseDecline("undefined value (division by zero or similar)")
        if _bits(e) > self.lim.max_bits:
            raise ParseDecline("number too large", "bounds")
        return e

    # -- grammar -------------------------------------------------------------------------------------------
    def parse_expr(self) -> tuple[sp.Expr, str]:
        self.enter()
        left, top = self.parse_term()
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.text in "+-":
            self.i += 1
            right, _ = self.parse_term()
            self.ops.add(tok.text)
            left = self.check_size(sp.Add(left, -right if tok.text == "-" else right))
            top = "+"
        self.depth -= 1
        return left, top

    def _starts_implicit(self, tok: Token | None) -> bool:
        return tok is not None and (tok.kind == "name" or (tok.kind == "op" and tok.text == "("))

    def parse_term(self) -> tuple[sp.Expr, str]:
        left, top = self.parse_unary()
        while True:
            tok = self.peek()
            if tok is not None and tok.kind == "op" and tok.text in "*/":
                self.i += 1
                right, _ = self.parse_unary()
            elif self._starts_implicit(tok):
                right, _ = self.parse_unary()
                tok = Token("op", "*")
            else:
                break
            if tok.text == "*":
                self.ops.add("*")
                if _bits(left) + _bits(right) > self.lim.max_bits:
                    raise ParseDecline("number too large", "bounds")
                left = self.check_size(sp.Mul(left, right))
                top = "*"
            else:
                self.ops.add("/")
                if right == 0:
                    raise ParseDecline("division by zero")
                if _bits(left) + _bits(right) > self.lim.max_bits:
                    raise ParseDecline("number too large", "bounds")
                left = self.check_size(sp.Mul(left, sp.Pow(right, -1)))
                top = "/"
        return left, top

    def parse_unary(self) -> tuple[sp.Expr, str]:
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text in "+-":
            self.i += 1
            self.enter()
            operand, top = self.parse_unary()
            self.depth -= 1
            if tok.text == "-":
                return -operand, "neg"
            return operand, top
        return self.parse_power()

    def parse_power(self) -> tuple[sp.Expr, str]:
        base, top = self.parse_postfix()
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text == "^":
            self.i += 1
            self.enter()
            exponent, _ = self.parse_unary()
            self.depth -= 1
            self.ops.add("^")
            return self.power(base, exponent), "^"
        return base, top

    def power(self, base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
        if exponent.is_Rational:
            p, q = abs(exponent.p), exponent.q  # type: ignore[attr-defined]
            if p > self.lim.max_exponent or q > self.lim.max_exponent:
                raise ParseDecline(f"exponent larger than {self.lim.max_exponent}", "bounds")
            if base.is_Rational and p > 1 and _bits(base) * p > self.lim.max_bits:
                raise ParseDecline("power too large", "bounds")
            if base == 0 and exponent.is_negative:
                raise ParseDecline("division by zero")
        elif exponent.is_number:
            # e.g. 2^pi, 2^sqrt(2): sympy keeps these unevaluated unless the exponent is huge/complex
            if _bits(exponent) > 64:
                raise ParseDecline("exponent too large", "bounds")
        return self.check_size(sp.Pow(base, exponent))

    def parse_postfix(self) -> tuple[sp.Expr, str]:
        value, top = self.parse_primary()
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text == "!":
            self.i += 1
            nxt = self.peek()
            if nxt is not None and nxt.kind == "op" and nxt.text == "!":
                raise ParseDecline("'!!' is ambiguous")
            self.ops.add("!")
            return self.factorial(value), "!"
        return value, top

    def factorial(self, arg: sp.Expr) -> sp.Expr:
        if arg.is_number:
            if not (arg.is_Integer and 0 <= arg <= self.lim.max_factorial):  # type: ignore[operator]
                raise ParseDecline(f"factorial needs an integer from 0 to {self.lim.max_factorial}", "bounds")
        elif arg.free_symbols and not arg.is_Symbol:
            raise ParseDecline("factorial of a compound symbolic expression")
        return sp.factorial(arg)

    def parse_primary(self) -> tuple[sp.Expr, str]:
        tok = self.peek()
        if tok is None:
            raise ParseDecline("unexpected end of expression")
        if tok.kind == "num":
            self.i += 1
            return self.number(tok.text), "num"
        if tok.kind == "op":
            if tok.text != "(":
                raise ParseDecline(f"unexpected {tok.text!r}")
            self.i += 1
            value, top = self.parse_expr()
            self.expect_op(")")
            return value, top
        name = tok.text
        self.i += 1
        if name in _CONSTANTS:
            return _CONSTANTS[name], "sym"
        if name in FUNCTIONS:
            return self.call(name), name
        return sp.Symbol(name), "sym"

    def call(self, name: str) -> sp.Expr:
        tok = self.peek()
        self.enter()
        if tok is not None and tok.kind == "op" and tok.text == "(":
            self.i += 1
            arg, _ = self.parse_expr()
            self.expect_op(")")
        elif tok is not None and (tok.kind == "num" or (tok.kind == "name" and tok.text not in FUNCTIONS)):
            # "sin x", "ln 2", "sqrt 2": only a single atom may follow a function name without parentheses
            self.i += 1
            arg = self.number(tok.text) if tok.kind == "num" else _CONSTANTS.get(tok.text, sp.Symbol(tok.text))
            nxt = self.peek()
            if nxt is not None and (nxt.kind != "op" or nxt.text in "^(!"):
                raise ParseDecline(f"ambiguous argument of {name} without parentheses")
        else:
            raise ParseDecline(f"{name} needs an argument")
        self.depth -= 1
        self.ops.add(name)
        if name == "factorial":
            return self.factorial(arg)
        if name in ("exp",) and arg.is_number and _bits(arg) > 64:
            raise ParseDecline("argument too large", "bounds")
        return self.check_size(FUNCTIONS[name](arg))

    def number(self, text: str) -> sp.Expr:
        if "." in text:
            self.has_decimal = True
            whole, frac = text.split(".")
            return sp.Rational(int(whole or "0") * 10 ** len(frac) + int(frac), 10 ** len(frac))
        return sp.Integer(int(text))


def parse_expression(text: str, limits: ParseLimits) -> ParsedExpr:
    """Parse whitelisted math ``text`` into a sympy expression; raise :class:`ParseDecline` otherwise."""
    tokens = tokenize(text, limits)
    parser = _Parser(tokens, limits)
    expr, top = parser.parse_expr()
    if parser.i != len(tokens):
        raise ParseDecline(f"unexpected {tokens[parser.i].text!r}")
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise ParseDecline("undefined value (division by zero or similar)")
    return ParsedExpr(expr=expr, top=top, ops=parser.ops, has_decimal=parser.has_decimal, tokens=len(tokens))


def parse_operand(text: str, limits: ParseLimits) -> ParsedExpr:
    """Parse a single operand (a ``unary`` in the grammar: ``240``, ``(9 + 7)``, ``2^10``), not a sum.

    Used where a phrase such as "square root of 9 + 7" would otherwise be ambiguous.
    """
    tokens = tokenize(text, limits)
    parser = _Parser(tokens, limits)
    expr, top = parser.parse_unary()
    if parser.i != len(tokens):
        raise ParseDecline("ambiguous operand: use parentheses")
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise ParseDecline("undefined value (division by zero or similar)")
    return ParsedExpr(expr=expr, top=top, ops=parser.ops, has_decimal=parser.has_decimal, tokens=len(tokens))
