"""Stage 1: an exact sympy math engine that answers math queries written in natural language, or declines.

``MathEngine().solve(query)`` returns a :class:`MathAnswer` when the query is math it can answer exactly, and
``None`` ("not mine") otherwise; it never guesses. ``explain(query)`` returns the same answer, or a
:class:`MathDecline` that says why the query was declined.

How a query is read
-------------------
1. Cheap checks: the query must be a ``str`` of at most ``max_query_chars`` characters with no control
   characters; a few Unicode symbols are mapped to ASCII (``× ÷ − ² ³ √ π``) and every other character outside
   ``a-z A-Z 0-9 space + - * / ^ ( ) ! . , = ? % : '`` declines the query.
2. The text is lower-cased, polite framing is dropped ("please", "can you", trailing "?") and word operators
   are rewritten ("plus", "minus", "times", "multiplied by", "divided by", "to the power of", "squared",
   "cubed").
3. One of a fixed set of *intent* patterns must match the whole query, e.g. ``what is <expr>``,
   ``calculate <expr>``, ``<expr> = ?``, ``<p>% of <expr>``, ``the square root of <operand>``,
   ``solve [for x:] <eq>``, ``find x if <eq>``, ``the roots of <eq>``, ``[the] derivative of <expr> [with
   respect to x]``, ``d/dx <expr>``, ``differentiate <expr>``, ``integrate <expr> [dx] [from a to b]``,
   ``[the] integral|antiderivative of <expr> [dx]``, ``simplify|expand|factor <expr>``, or a bare expression;
   and everyday forms: ``<fraction> of <n>`` ("two thirds of 90", "3/4 of 120", "half of 86"),
   ``if|given that <equation>, what is|find x``, ``n factorial`` / ``factorial of n``, ``the sqrt of <n>``,
   ``the average|mean of <list>``, ``n choose k`` / ``how many ways can you choose k from n``,
   ``<p> out of <w> is what percent``, ``increase|decrease <n> by <p>%`` / ``<n> increased|decreased by <p>%``,
   ``the sum|product of <a> and <b>``, ``add <a> and <b>``, ``multiply <a> by <b>``, ``the square|cube of <n>``,
   ``<b> to the <n>th power`` / ``to the power <n>``, ``double|twice|triple <n>``, ``<n> doubled``,
   ``<a> mod|modulo <b>``, ``the remainder when <a> is divided by <b>``, ``gcd|lcm|greatest common divisor|least
   common multiple of <list>``. Each captured part must still parse with the whitelist grammar as a number.
4. The captured math text must then parse *completely* with the whitelist grammar of
   :mod:`langchain_slm_router.math_parsing` (numbers, single-letter variables, ``pi``, ``e``, ``+ - * / ^ !``,
   parentheses, and a fixed list of functions). Any leftover word ("What year did World War 2 end?",
   "What is 7-Eleven?") means the query is declined. Evaluation framings ("what is ...") additionally need
   at least one operation and no free variables, so "What is 1984?" or "What is x?" are declined too.

No ``eval``
-----------
User text never reaches ``eval``, ``exec``, ``sympify`` or ``parse_expr``: the parser tokenizes against a
whitelist and calls sympy constructors directly (``Integer``, ``Symbol``, ``Add``, ``sin``, ...). There is
nothing in the grammar that could name a Python object (no underscores, dots after names, quotes, brackets,
attribute access or calls of arbitrary names).

Bounds
------
* ``max_query_chars`` (default 500): longer queries are declined before any other work, in O(1).
* ``max_expression_nodes`` (tokens, default 200), ``max_depth`` (nesting, default 40), ``max_exponent``
  (|exponent| of any power, default 10 000), ``max_factorial`` (default 1000), ``max_result_digits``
  (digits of every exact number built, default 3 900; checked *before* sympy computes a product or power, so
  ``9^9^9^9`` and ``factorial(10^9)`` are declined in microseconds), ``max_symbolic_degree`` (exponents on
  symbols before expanding / factoring / integrating / solving, default 64) and ``max_answer_chars``.
* Wall clock: cheap operations on bounded input (arithmetic, derivatives of small expressions, factoring and
  solving polynomials of degree <= 4 with rational coefficients) run inline. Everything else (integration,
  ``simplify``, general ``solve``, evaluating irrational numbers, integer factorisation) runs in a daemon
  worker thread and the caller waits at most ``timeout_s``. A computation that overruns is stopped: the
  engine raises an exception inside its thread (CPython's ``PyThreadState_SetAsyncExc``), which takes effect at
  the thread's next Python instruction, so sympy (pure Python) stops within milliseconds and its slot comes
  back; a single long C call (big-integer arithmetic, already bounded by ``max_result_digits``) finishes first.
  Without this, an abandoned ``integrate`` can hold the GIL for many minutes and slow every other thread of
  the process (the SLM's included). At most ``BACKGROUND_SLOTS`` (4) computations run in the whole process,
  and a call that cannot get a slot within ``timeout_s`` is declined ("busy"). On a timeout the engine declines (code ``"timeout"``) unless
  ``raise_on_timeout=True``, in which case it raises :class:`~langchain_slm_router.errors.MathTimeoutError`.
  (``signal.alarm`` was rejected: it only works in the main thread and would steal the application's
  ``SIGALRM``.)

Errors
------
``solve``/``explain`` decline instead of raising for every ``str`` input; a non-``str`` query raises
:class:`~langchain_slm_router.errors.InvalidQueryError`; with ``raise_on_timeout=True`` a time-out raises
:class:`~langchain_slm_router.errors.MathTimeoutError`. The engine holds no mutable state, so one instance is
safe to share between threads.

Async callers
-------------
``asolve``/``aexplain`` run the same call on a small process-wide thread pool (``CALLER_THREADS`` threads, one
per waiting caller), so an event loop never waits for sympy: a hard query costs its caller up to about
``2 * timeout_s`` (a slot wait plus the computation bound) while the loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import platform
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import sympy as sp
from pydantic import BaseModel, ConfigDict, Field

from langchain_slm_router.errors import InvalidQueryError, MathTimeoutError
from langchain_slm_router.math_parsing import (
    ParseDecline,
    ParsedExpr,
    ParseLimits,
    parse_expression,
    parse_operand,
)
from langchain_slm_router.trace import elapsed_ms

__all__ = [
    "BACKGROUND_SLOTS", "CALLER_THREADS", "MathAnswer", "MathDecline", "MathEngine", "default_math_engine",
]

T = TypeVar("T")

#: Process-wide cap on background sympy computations (including ones that overran their time bound).
BACKGROUND_SLOTS = 4
_SLOTS = threading.BoundedSemaphore(BACKGROUND_SLOTS)
#: Threads in which async callers wait for the engine (a caller waits at most ~2 x timeout_s in one).
CALLER_THREADS = 2 * BACKGROUND_SLOTS
_CALLERS = ThreadPoolExecutor(max_workers=CALLER_THREADS, thread_name_prefix="math-engine-caller")


class MathAnswer(BaseModel):
    """An exact answer from the math engine."""

    model_config = ConfigDict(frozen=True)

    answer: str = Field(description="Exact final answer in sympy's str() form, e.g. '391', 'x = -2, 2', "
                                    "'2*exp(2*x)', '-x*cos(x) + sin(x) + C', '45/2'.")
    kind: str = Field(description="arithmetic, fraction, power, root, factorial, function, percent, equation, "
                                  "derivative, integral, simplify, expand, factor, average, binomial, remainder, "
                                  "gcd or lcm.")
    expression: str = Field(description="The normalised expression that was computed, e.g. 'diff(x^2, x)'.")
    latency_ms: float = Field(description="Wall time of the call in milliseconds.")
    decimal: str | None = Field(default=None, description="A 15-significant-digit decimal of a non-integer "
                                                          "numeric answer, e.g. '22.5' for '45/2'.")


class MathDecline(BaseModel):
    """Why the engine declined a query (``solve`` returns ``None`` in these cases)."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="not_math, too_long, bounds, unsupported, timeout, busy or error.")
    reason: str
    latency_ms: float


class _Decline(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Timeout(Exception):
    pass


class _Abandoned(BaseException):
    """Raised inside an overrunning computation's thread to stop it (a ``BaseException``, so that sympy's own
    ``except Exception`` handlers do not swallow it)."""


_CAN_STOP_THREADS = platform.python_implementation() == "CPython"
_STOP_RETRY_S = 0.1
_STOP_TRIES = 600


class _Worker:
    """One background computation, which the caller can stop once it overruns its time bound."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.box: dict[str, object] = {}
        self.done = threading.Event()
        self._guard = threading.Lock()
        self._running = True
        self.thread = threading.Thread(target=self._work, name="math-engine-worker", daemon=True)

    def _work(self) -> None:
        try:
            try:
                self.box["value"] = self.fn()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                self.box["error"] = exc
            finally:
                self._finish()
        except _Abandoned:  # a stop request that landed after the computation had ended
            pass

    def _finish(self) -> None:
        while True:  # a stop request that arrives while finishing is ignored: the work is over
            try:
                with self._guard:
                    self._running = False
                break
            except _Abandoned:
                continue
        _SLOTS.release()
        self.done.set()

    def stop(self) -> None:
        """Stop the computation from a reaper thread (returns at once)."""
        if _CAN_STOP_THREADS:
            threading.Thread(target=self._reap, name="math-engine-reaper", daemon=True).start()

    def _reap(self) -> None:
        for _ in range(_STOP_TRIES):  # again and again: a bare ``except:`` in sympy may swallow one
            with self._guard:
                if not self._running or not self.thread.is_alive() or self.thread.ident is None:
                    break
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread.ident),
                                                           ctypes.py_object(_Abandoned))
            if self.done.wait(_STOP_RETRY_S):
                return
        self.thread.join(_STOP_RETRY_S)
        if not self.thread.is_alive() and not self.done.is_set():  # it died between two instructions of _finish
            _SLOTS.release()
            self.done.set()


# ---------------------------------------------------------------------------------------------------------
# Query normalisation and intent patterns
# ---------------------------------------------------------------------------------------------------------

_UNICODE = str.maketrans({
    "×": "*", "·": "*", "⋅": "*", "∗": "*", "÷": "/", "−": "-", "–": "-", "²": "^2", "³": "^3",
    "√": " sqrt ", "π": " pi ", "’": "'", "\t": " ", "\n": " ", "\r": " ",
})
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 +-*/^()!.,=?%:'")

_WORD_OPS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"\bmultiplied\s+by\b", "*"),
    (r"\btimes\b", "*"),
    (r"\bdivided\s+by\b", "/"),
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    (r"\b(?:raised\s+)?to\s+the\s+power\s+of\b", "^"),
    (r"\bsquared\b", "^2"),
    (r"\bcubed\b", "^3"),
    (r"\bto\s+the\s+(\d{1,4})(?:st|nd|rd|th)(?:\s+power)?\b", r"^\1"),   # "5 to the 6th power"
    (r"\bto\s+the\s+power\s+(?=[\d(])", "^"),                             # "3 to the power 9"
    (r"(?<![a-z])(\d+)\s+factorial\b", r"\1!"),                           # "9 factorial"
    (r"\bfactorial\s+of\b", "factorial"),                                  # "factorial of 9"
    (r"\bsqrt\s+of\b", "square root of"),
))
_LEADING = re.compile(r"^(?:(?:please|kindly|hey|hi|ok|okay)\s*,?\s+|(?:can|could|would|will)\s+you\s+"
                      r"(?:please\s+)?|(?:tell\s+me|help\s+me|i\s+need\s+to|i\s+want\s+to)\s+)+")
_TRAILING_PLEASE = re.compile(r"\s*,?\s*please$")

_EVAL = (r"(?:what\s+is\s+the\s+value\s+of|find\s+the\s+value\s+of|the\s+value\s+of|value\s+of|what\s+is|"
         r"what's|whats|calculate|compute|evaluate|find|determine|work\s+out|give\s+me|how\s+much\s+is)")
_WRT = r"(?:\s+(?:with\s+respect\s+to|wrt|w\.r\.t\.?)\s+(?P<v>[a-z]))?"

_P_DERIV = (
    re.compile(rf"^(?:{_EVAL}\s+)?(?:the\s+)?(?:(?P<ord>first|second|third|1st|2nd|3rd)\s+)?"
               rf"derivative\s+of\s+(?P<e>.+?){_WRT}$"),
    re.compile(rf"^(?:{_EVAL}\s+)?d/d(?P<v>[a-z])\s*(?:of\s+)?(?P<e>.+)$"),
    re.compile(rf"^differentiate\s+(?P<e>.+?){_WRT}$"),
)
_P_INTEG = (
    re.compile(rf"^(?:{_EVAL}\s+)?(?:the\s+)?(?:(?:indefinite|definite)\s+)?"
               rf"(?:integral|antiderivative|anti-derivative|primitive)\s+of\s+(?P<e>.+)$"),
    re.compile(r"^integrate\s+(?P<e>.+)$"),
)
_P_INT_BOUNDS = re.compile(r"\s+from\s+(?P<a>.+?)\s+to\s+(?P<b>.+)$")
_P_INT_WRT = re.compile(r"\s+(?:with\s+respect\s+to|wrt)\s+(?P<v>[a-z])$")
_P_INT_DX = re.compile(r"(?:(?<=\s)|(?<=\)))\*?\s*d(?P<v>[a-z])$")
_P_TRANSFORM = re.compile(r"^(?P<op>simplify|expand|factor|factorise|factorize)\s*:?\s+(?:the\s+)?"
                          r"(?:(?:expression|polynomial|number|integer)\s*:?\s+)?(?P<e>.+)$")
_P_ROOT = re.compile(rf"^(?:{_EVAL}\s+)?(?:the\s+)?(?P<k>square|cube|fourth|fifth)\s+root\s+of\s+(?P<e>.+)$")
_P_PERCENT = (
    re.compile(rf"^(?:{_EVAL}\s+)?(?P<p>.+?)\s*(?:%|\s+percent)\s+of\s+(?P<e>.+)$"),
)
_P_PERCENT_OF = (
    re.compile(r"^(?:what|which)\s+(?:percent|percentage)\s+of\s+(?P<e>.+?)\s+is\s+(?P<p>.+)$"),
    re.compile(r"^(?P<p>.+?)\s+is\s+what\s+(?:percent|percentage)\s+of\s+(?P<e>.+)$"),
    re.compile(r"^(?P<p>.+?)\s+out\s+of\s+(?P<e>.+?)\s+is\s+what\s+(?:percent|percentage)$"),
)
_P_EQUATION = (
    re.compile(r"^solve\s+for\s+(?P<v>[a-z])\s*(?::|,|\s+in|\s+if|\s+where|\s+given)?\s+(?P<e>.+)$"),
    re.compile(r"^solve\s+(?:the\s+equation\s+)?:?\s*(?P<e>.+?)(?:\s+for\s+(?P<v>[a-z]))?$"),
    re.compile(rf"^(?:{_EVAL}\s+)?(?:the\s+value\s+of\s+)?(?P<v>[a-z])\s*,?\s*(?::|if|when|where|given(?:\s+that)?"
               rf"|such\s+that|so\s+that)\s+(?P<e>.+=.+)$"),
    re.compile(rf"^(?:{_EVAL}\s+|what\s+are\s+)?(?:the\s+)?(?:roots?|solutions?|zeros|zeroes)\s+(?:of|to|for)\s+"
               rf"(?:the\s+(?:equation|polynomial)\s+)?(?P<e>.+?)(?:\s+for\s+(?P<v>[a-z]))?$"),
)
_P_EVAL = re.compile(rf"^{_EVAL}\s*:?\s+(?:the\s+)?(?P<e>.+)$")

# Everyday phrasings ("two thirds of 90", "if 3x + 5 = 20, what is x", "7 choose 3", "the average of 3, 5 and 10",
# "increase 80 by 15%", "the sum of 4 and 5", "double 17", "17 mod 5", "gcd of 12 and 18"). Every captured part
# still has to parse completely with the whitelist grammar; the words themselves are fixed alternatives.
_FRACTION_NUMERATORS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                        "seven": 7, "eight": 8, "nine": 9}
_FRACTION_DENOMINATORS = {"half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4,
                          "fourth": 4, "fourths": 4, "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6,
                          "seventh": 7, "sevenths": 7, "eighth": 8, "eighths": 8, "ninth": 9, "ninths": 9,
                          "tenth": 10, "tenths": 10}
_FRACTION = (rf"(?:(?P<num>{'|'.join(_FRACTION_NUMERATORS)})\s+)?(?P<den>{'|'.join(_FRACTION_DENOMINATORS)})"
             r"|(?P<frac>\d+\s*/\s*\d+)")
_P_FRACTION_OF = re.compile(rf"^(?:{_EVAL}\s+)?(?:{_FRACTION})\s+of\s+(?P<e>.+)$")
_P_IF_EQUATION = re.compile(rf"^(?:if|given(?:\s+that)?)\s+(?P<e>[^,]+=[^,]+?)\s*(?:,\s*|\s+)(?:then\s+)?"
                            rf"(?:{_EVAL}|solve\s+for)\s+(?:the\s+value\s+of\s+)?(?P<v>[a-z])$")
_P_CHOOSE = (
    re.compile(rf"^(?:{_EVAL}\s+)?(?P<n>\d+)\s+choose\s+(?P<k>\d+)$"),
    re.compile(r"^(?:in\s+)?how\s+many\s+ways\s+can\s+(?:you|we|i|one)\s+(?:choose|pick|select)\s+(?P<k>\d+)\s+"
               r"(?:from|out\s+of)\s+(?P<n>\d+)$"),
)
_P_AVERAGE = re.compile(rf"^(?:{_EVAL}\s+)?(?:the\s+)?(?:average|mean)\s+of\s+(?P<list>.+)$")
_P_WORD_ARITH = (
    re.compile(rf"^(?:{_EVAL}\s+)?(?:the\s+)?(?P<op>sum|product)\s+of\s+(?P<a>.+?)\s+and\s+(?P<b>.+)$"),
    re.compile(r"^(?P<op>add)\s+(?P<a>.+?)\s+and\s+(?P<b>.+)$"),
    re.compile(r"^(?P<op>multiply)\s+(?P<a>.+?)\s+(?:by|and)\s+(?P<b>.+)$"),
)
_P_SQUARE_OF = re.compile(rf"^(?:{_EVAL}\s+)?(?:the\s+)?(?P<k>square|cube)\s+of\s+(?P<e>.+)$")
_P_MULTIPLE = (
    re.compile(rf"^(?:{_EVAL}\s+)?(?P<m>double|twice|triple)\s+(?P<e>.+)$"),
    re.compile(rf"^(?:{_EVAL}\s+)?(?P<e>.+?)\s+(?P<m>doubled)$"),
)
_MULTIPLES = {"double": 2, "twice": 2, "doubled": 2, "triple": 3}
_P_REMAINDER = (
    re.compile(rf"^(?:{_EVAL}\s+)?(?P<a>.+?)\s+mod(?:ulo)?\s+(?P<b>.+)$"),
    re.compile(rf"^(?:{_EVAL}\s+)?(?:the\s+)?remainder\s+when\s+(?P<a>.+?)\s+is\s+/\s*(?P<b>.+)$"),
)
_P_GCD = re.compile(rf"^(?:{_EVAL}\s+)?(?:the\s+)?(?P<f>gcd|lcm|greatest\s+common\s+divisor|least\s+common\s+multiple)"
                    rf"\s+of\s+(?P<list>.+)$")
_P_PERCENT_CHANGE = (
    re.compile(r"^(?P<dir>increase|decrease)\s+(?P<x>.+?)\s+by\s+(?P<p>.+?)\s*(?:%|\s+percent)$"),
    re.compile(rf"^(?:{_EVAL}\s+)?(?P<x>.+?)\s+(?P<dir>increased|decreased)\s+by\s+(?P<p>.+?)\s*(?:%|\s+percent)$"),
)
_LIST_SEP = re.compile(r"\s*,\s+and\s+|\s*,\s+|\s+and\s+")
_MAX_LIST = 50
_P_QUESTION_EQ = re.compile(r"^(?P<e>.+?)\s*=\s*\?*$")

_FUNCTION_TOPS = frozenset({"sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "arcsin", "arccos",
                            "arctan", "sinh", "cosh", "tanh", "exp", "log", "ln", "log10", "abs"})
_ROOT_INDEX = {"square": 2, "cube": 3, "fourth": 4, "fifth": 5}
_ORDERS = {None: 1, "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3}
_TRANSFORM_KIND = {"simplify": "simplify", "expand": "expand", "factor": "factor", "factorise": "factor",
                   "factorize": "factor"}


def _normalise(query: str) -> str:
    text = query.translate(_UNICODE)
    if not all(ch in _ALLOWED for ch in text):
        raise _Decline("not_math", "characters outside the math grammar")
    text = " ".join(text.lower().split())
    for pattern, repl in _WORD_OPS:
        text = pattern.sub(repl, text)
    text = _LEADING.sub("", text)
    text = text.rstrip(" ?.")
    if text.endswith("please"):
        text = _TRAILING_PLEASE.sub("", text).rstrip(" ?.")
    return text


# ---------------------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------------------

def _terminating_decimal(q: sp.Rational) -> str | None:
    """Exact decimal string of ``q`` if its expansion terminates (denominator 2^a * 5^b), else None."""
    den = int(q.q)
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return None
    places = max(twos, fives)
    scaled = abs(int(q.p)) * 10 ** places // int(q.q)
    digits = str(scaled).rjust(places + 1, "0")
    whole, frac = digits[: len(digits) - places], digits[len(digits) - places:]
    text = f"{whole}.{frac}".rstrip("0").rstrip(".") if places else whole
    return f"-{text}" if q < 0 else text


def _decimal_of(value: sp.Expr) -> str:
    if value.is_Rational:
        exact = _terminating_decimal(value)  # type: ignore[arg-type]
        if exact is not None and len(exact) <= 30:
            return exact
    return str(sp.N(value, 15))


def _sort_key(value: sp.Expr) -> tuple[float, float]:
    if value.is_Rational:
        return (float(value), 0.0)
    re_part, im_part = sp.N(value, 15).as_real_imag()
    return (float(re_part), float(im_part))


def _max_symbolic_exponent(expr: sp.Expr) -> int:
    worst = 0
    for power in expr.atoms(sp.Pow):
        exp = power.exp
        if not power.base.is_number and exp.is_Rational:
            worst = max(worst, abs(int(exp.p)))  # type: ignore[attr-defined]
    return worst


def _format_solutions(var: sp.Symbol, sols: list[sp.Expr]) -> str:
    if not sols:
        return "no solution"
    unique = list(dict.fromkeys(sols))
    try:
        unique.sort(key=_sort_key)
    except (TypeError, ValueError):
        unique.sort(key=sp.default_sort_key)
    return f"{var} = " + ", ".join(str(s) for s in unique)


# ---------------------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------------------

class MathEngine(BaseModel):
    """Configuration of the exact math stage; ``solve`` answers exactly or returns ``None``.

    Thread-safe: instances are immutable and hold no per-call state.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_query_chars: int = Field(default=500, ge=1, description="Longer queries are declined (None).")
    max_expression_nodes: int = Field(default=200, ge=1, description="Max tokens in one parsed expression.")
    max_depth: int = Field(default=40, ge=1, description="Max nesting depth of an expression.")
    timeout_s: float = Field(default=1.0, gt=0, description="Wall-clock bound on one background computation.")
    max_exponent: int = Field(default=10_000, ge=1, description="Max |exponent| (numerator or denominator).")
    max_factorial: int = Field(default=1000, ge=0, description="Max integer factorial argument.")
    max_result_digits: int = Field(default=3900, ge=10, description="Max digits of any exact number built.")
    max_symbolic_degree: int = Field(default=64, ge=1, description="Max exponent on a symbol before "
                                                                   "expand/factor/integrate/solve.")
    max_factor_digits: int = Field(default=30, ge=1, description="Max digits of an integer to factorise.")
    max_answer_chars: int = Field(default=2000, ge=10, description="Longer answers are declined.")
    raise_on_timeout: bool = Field(default=False, description="Raise MathTimeoutError instead of declining.")

    # -- public API ---------------------------------------------------------------------------------------
    def solve(self, query: str) -> MathAnswer | None:
        """Answer ``query`` exactly, or return ``None`` when it is not math this engine can answer."""
        result = self.explain(query)
        return result if isinstance(result, MathAnswer) else None

    def explain(self, query: str) -> MathAnswer | MathDecline:
        """Like :meth:`solve`, but a declined query returns a :class:`MathDecline` with the reason."""
        start = time.perf_counter()
        if not isinstance(query, str):
            raise InvalidQueryError(f"query must be a str, not {type(query).__name__}")
        try:
            if len(query) > self.max_query_chars:
                raise _Decline("too_long", f"query longer than {self.max_query_chars} characters")
            answer, kind, expression, decimal = self._answer(query)
            if len(answer) > self.max_answer_chars:
                raise _Decline("bounds", f"answer longer than {self.max_answer_chars} characters")
        except _Decline as exc:
            return MathDecline(code=exc.code, reason=exc.reason, latency_ms=elapsed_ms(start))
        except ParseDecline as exc:
            return MathDecline(code=exc.code, reason=exc.reason, latency_ms=elapsed_ms(start))
        except _Timeout:
            if self.raise_on_timeout:
                raise MathTimeoutError(f"math computation exceeded {self.timeout_s} s") from None
            return MathDecline(code="timeout", reason=f"computation exceeded {self.timeout_s} s",
                               latency_ms=elapsed_ms(start))
        except RecursionError:
            return MathDecline(code="bounds", reason="expression too deep", latency_ms=elapsed_ms(start))
        except Exception as exc:  # sympy raised (NotImplementedError, PolynomialError, ...): not ours
            return MathDecline(code="error", reason=f"{type(exc).__name__}: {exc}"[:300], latency_ms=elapsed_ms(start))
        return MathAnswer(answer=answer, kind=kind, expression=expression, latency_ms=elapsed_ms(start),
                          decimal=decimal)

    async def asolve(self, query: str) -> MathAnswer | None:
        """Async :meth:`solve`: runs on the engine's caller threads, never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(_CALLERS, self.solve, query)

    async def aexplain(self, query: str) -> MathAnswer | MathDecline:
        """Async :meth:`explain`: runs on the engine's caller threads, never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(_CALLERS, self.explain, query)

    # -- dispatch -----------------------------------------------------------------------------------------
    @property
    def _limits(self) -> ParseLimits:
        return ParseLimits(max_tokens=self.max_expression_nodes, max_depth=self.max_depth,
                           max_exponent=self.max_exponent, max_factorial=self.max_factorial,
                           max_bits=int(self.max_result_digits * 3.3219280948873626) + 1)

    def _answer(self, query: str) -> tuple[str, str, str, str | None]:
        text = _normalise(query)
        if not text:
            raise _Decline("not_math", "empty query")
        lim = self._limits
        for pattern in _P_DERIV:
            if m := pattern.match(text):
                return self._derivative(m.group("e"), m.groupdict().get("v"), _ORDERS[m.groupdict().get("ord")], lim)
        for pattern in _P_INTEG:
            if m := pattern.match(text):
                return self._integral(m.group("e"), lim)
        if m := _P_TRANSFORM.match(text):
            return self._transform(_TRANSFORM_KIND[m.group("op")], m.group("e"), lim)
        if m := _P_ROOT.match(text):
            return self._root(m.group("k"), m.group("e"), lim)
        if m := _P_IF_EQUATION.match(text):
            return self._equation(m.group("e"), m.group("v"), lim)
        if m := _P_FRACTION_OF.match(text):
            return self._fraction_of(m, lim)
        for pattern in _P_CHOOSE:
            if m := pattern.match(text):
                return self._binomial(m.group("n"), m.group("k"), lim)
        if m := _P_AVERAGE.match(text):
            return self._average(m.group("list"), lim)
        for pattern in _P_WORD_ARITH:
            if m := pattern.match(text):
                return self._word_arithmetic(m.group("op"), m.group("a"), m.group("b"), lim)
        if m := _P_SQUARE_OF.match(text):
            return self._power_of(m.group("e"), 2 if m.group("k") == "square" else 3, lim)
        for pattern in _P_MULTIPLE:
            if m := pattern.match(text):
                return self._multiple(_MULTIPLES[m.group("m")], m.group("e"), lim)
        for pattern in _P_REMAINDER:
            if m := pattern.match(text):
                return self._remainder(m.group("a"), m.group("b"), lim)
        if m := _P_GCD.match(text):
            return self._gcd_lcm("lcm" if m.group("f").startswith(("lcm", "least")) else "gcd", m.group("list"), lim)
        for pattern in _P_PERCENT_CHANGE:
            if m := pattern.match(text):
                return self._percent_change(m.group("x"), m.group("p"), m.group("dir").startswith("increase"), lim)
        for pattern in _P_PERCENT_OF:
            if m := pattern.match(text):
                return self._what_percent(m.group("p"), m.group("e"), lim)
        for pattern in _P_PERCENT:
            if m := pattern.match(text):
                return self._percent(m.group("p"), m.group("e"), lim)
        for pattern in _P_EQUATION:
            if m := pattern.match(text):
                return self._equation(m.group("e"), m.group("v"), lim)
        if m := _P_EVAL.match(text):
            return self._evaluate(m.group("e"), lim)
        return self._evaluate(text, lim)

    # -- background execution -----------------------------------------------------------------------------
    def _bounded(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a daemon worker thread and wait at most ``timeout_s`` for it."""
        deadline = time.monotonic() + self.timeout_s
        if not _SLOTS.acquire(timeout=self.timeout_s):
            raise _Decline("busy", "all background math slots are busy")
        worker = _Worker(fn)
        try:
            worker.thread.start()
        except RuntimeError:
            _SLOTS.release()
            raise _Decline("busy", "cannot start a background math thread") from None
        if not worker.done.wait(max(0.0, deadline - time.monotonic())):
            worker.stop()  # an overrunning sympy call would otherwise hold the GIL for minutes
            raise _Timeout()
        if "error" in worker.box:
            raise worker.box["error"]  # type: ignore[misc]
        return worker.box["value"]  # type: ignore[return-value]

    def _check_degree(self, expr: sp.Expr) -> None:
        if _max_symbolic_exponent(expr) > self.max_symbolic_degree:
            raise _Decline("bounds", f"exponent on a variable larger than {self.max_symbolic_degree}")

    # -- numbers ------------------------------------------------------------------------------------------
    def _number_answer(self, value: sp.Expr, has_decimal: bool) -> tuple[str, str | None]:
        """(answer, decimal) of a numeric value; irrational values are simplified in the background."""
        if value.is_Rational:
            if value.is_Integer:
                return str(value), None
            decimal = _decimal_of(value)
            exact = _terminating_decimal(value)  # type: ignore[arg-type]
            if has_decimal and exact is not None:
                return exact, None
            return str(value), decimal

        def work() -> tuple[str, str | None]:
            simplified = sp.simplify(value)
            if simplified.is_Rational:
                return self._number_answer(simplified, has_decimal)
            return str(simplified), str(sp.N(simplified, 15))

        return self._bounded(work)

    @staticmethod
    def _numeric_kind(parsed: ParsedExpr) -> str:
        if parsed.top == "^":
            return "power"
        if parsed.top in ("sqrt", "cbrt"):
            return "root"
        if parsed.top == "!" or parsed.top == "factorial":
            return "factorial"
        if parsed.top in _FUNCTION_TOPS:
            return "function"
        if "/" in parsed.ops:
            return "fraction"
        return "arithmetic"

    def _evaluate(self, text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        if m := _P_QUESTION_EQ.match(text):
            text = m.group("e")
        elif "=" in text:
            return self._equation(text, None, lim)
        parsed = parse_expression(text, lim)
        if not parsed.ops:
            raise _Decline("not_math", "nothing to compute (a lone number or name)")
        if parsed.expr.free_symbols:
            raise _Decline("not_math", "expression has free variables; nothing to evaluate")
        answer, decimal = self._number_answer(parsed.expr, parsed.has_decimal)
        return answer, self._numeric_kind(parsed), _clean(text), decimal

    def _root(self, which: str, text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        parsed = parse_operand(text, lim)
        if parsed.expr.free_symbols:
            raise _Decline("not_math", "root of an expression with variables")
        index = _ROOT_INDEX[which]
        value = sp.sqrt(parsed.expr) if index == 2 else sp.root(parsed.expr, index)
        answer, decimal = self._number_answer(value, parsed.has_decimal)
        name = "sqrt" if index == 2 else f"root{index}"
        return answer, "root", f"{name}({_clean(text)})", decimal

    def _percent(self, p_text: str, text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        p = parse_operand(p_text, lim)
        base = parse_operand(text, lim)
        if p.expr.free_symbols or base.expr.free_symbols:
            raise _Decline("not_math", "percentage of an expression with variables")
        value = p.expr * base.expr / 100
        answer, decimal = self._number_answer(value, p.has_decimal or base.has_decimal)
        return answer, "percent", f"({_clean(p_text)})/100*({_clean(text)})", decimal

    def _what_percent(self, p_text: str, text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        part = parse_operand(p_text, lim)
        whole = parse_operand(text, lim)
        if part.expr.free_symbols or whole.expr.free_symbols or whole.expr == 0:
            raise _Decline("not_math", "percentage needs two numbers and a non-zero whole")
        value = 100 * part.expr / whole.expr
        answer, decimal = self._number_answer(value, part.has_decimal or whole.has_decimal)
        return f"{answer}%", "percent", f"100*({_clean(p_text)})/({_clean(text)})", decimal

    def _percent_change(self, x_text: str, p_text: str, up: bool,
                        lim: ParseLimits) -> tuple[str, str, str, str | None]:
        base, p = self._numbers([x_text, p_text], lim)
        sign = "+" if up else "-"
        value = base.expr * (100 + p.expr if up else 100 - p.expr) / 100
        answer, decimal = self._number_answer(value, base.has_decimal or p.has_decimal)
        return answer, "percent", f"({_clean(x_text)})*(100 {sign} {_clean(p_text)})/100", decimal

    # -- everyday phrasings -------------------------------------------------------------------------------
    @staticmethod
    def _numbers(texts: list[str], lim: ParseLimits) -> list[ParsedExpr]:
        """Each text parsed as one numeric operand (no variables), or the query is declined."""
        parsed = [parse_operand(t, lim) for t in texts]
        if any(p.expr.free_symbols for p in parsed):
            raise _Decline("not_math", "expected numbers, found variables")
        return parsed

    def _integers(self, texts: list[str], lim: ParseLimits) -> list[int]:
        values = [p.expr for p in self._numbers(texts, lim)]
        if not all(v.is_Integer for v in values):
            raise _Decline("not_math", "expected whole numbers")
        return [int(v) for v in values]  # type: ignore[call-overload]

    def _list(self, text: str, lim: ParseLimits) -> list[ParsedExpr]:
        items = [t for t in _LIST_SEP.split(text) if t]
        if not 2 <= len(items) <= _MAX_LIST:
            raise _Decline("not_math", f"expected a list of 2 to {_MAX_LIST} numbers")
        return self._numbers(items, lim)

    def _fraction_of(self, m: re.Match[str], lim: ParseLimits) -> tuple[str, str, str, str | None]:
        if m.group("frac") is not None:
            num_text, _, den_text = m.group("frac").partition("/")
            fraction = sp.Rational(int(num_text), int(den_text)) if int(den_text) else None
        else:
            fraction = sp.Rational(_FRACTION_NUMERATORS.get(m.group("num") or "one", 1),
                                   _FRACTION_DENOMINATORS[m.group("den")])
        if fraction is None:
            raise ParseDecline("division by zero")
        (base,) = self._numbers([m.group("e")], lim)
        answer, decimal = self._number_answer(fraction * base.expr, base.has_decimal)
        return answer, "fraction", f"{fraction}*({_clean(m.group('e'))})", decimal

    def _binomial(self, n_text: str, k_text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        n, k = self._integers([n_text, k_text], lim)
        if not 0 <= k <= n <= self.max_factorial:
            raise _Decline("bounds", f"n choose k needs 0 <= k <= n <= {self.max_factorial}")
        return str(sp.binomial(n, k)), "binomial", f"binomial({n}, {k})", None

    def _average(self, text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        items = self._list(text, lim)
        value = sp.Add(*[p.expr for p in items]) / len(items)
        answer, decimal = self._number_answer(value, any(p.has_decimal for p in items))
        return answer, "average", f"mean({', '.join(str(p.expr) for p in items)})", decimal

    def _word_arithmetic(self, op: str, a_text: str, b_text: str,
                         lim: ParseLimits) -> tuple[str, str, str, str | None]:
        a, b = self._numbers([a_text, b_text], lim)
        value = a.expr + b.expr if op in ("sum", "add") else a.expr * b.expr
        answer, decimal = self._number_answer(value, a.has_decimal or b.has_decimal)
        sign = "+" if op in ("sum", "add") else "*"
        return answer, "arithmetic", f"({_clean(a_text)}) {sign} ({_clean(b_text)})", decimal

    def _power_of(self, text: str, exponent: int, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        (base,) = self._numbers([text], lim)
        answer, decimal = self._number_answer(base.expr ** exponent, base.has_decimal)
        return answer, "power", f"({_clean(text)})^{exponent}", decimal

    def _multiple(self, factor: int, text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        (base,) = self._numbers([text], lim)
        answer, decimal = self._number_answer(factor * base.expr, base.has_decimal)
        return answer, "arithmetic", f"{factor}*({_clean(text)})", decimal

    def _remainder(self, a_text: str, b_text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        a, b = self._integers([a_text, b_text], lim)
        if b == 0:
            raise ParseDecline("division by zero")
        return str(a % b), "remainder", f"{a} mod {b}", None

    def _gcd_lcm(self, which: str, text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        values = self._integers([_clean(p) for p in _LIST_SEP.split(text) if p], lim)
        if len(values) < 2:
            raise _Decline("not_math", f"{which} needs at least two whole numbers")
        value = sp.gcd(values) if which == "gcd" else sp.lcm(values)
        return str(value), which, f"{which}({', '.join(map(str, values))})", None

    # -- equations ----------------------------------------------------------------------------------------
    def _equation(self, text: str, var_name: str | None, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        sides = text.split("=")
        if len(sides) == 1:
            lhs, rhs = parse_expression(sides[0], lim), None
        elif len(sides) == 2:
            lhs, rhs = parse_expression(sides[0], lim), parse_expression(sides[1], lim)
        else:
            raise _Decline("unsupported", "more than one '=' (systems are not supported)")
        free = lhs.expr.free_symbols | (rhs.expr.free_symbols if rhs is not None else set())
        if var_name is not None:
            var = sp.Symbol(var_name)
            if var not in free:
                raise _Decline("not_math", f"{var_name} does not occur in the equation")
        elif len(free) == 1:
            var = next(iter(free))
        else:
            raise _Decline("not_math", "an equation needs exactly one unknown (or 'for x')")
        if rhs is None and not lhs.ops:
            raise _Decline("not_math", "nothing to solve (a lone name)")
        expr = lhs.expr - rhs.expr if rhs is not None else lhs.expr
        shown = f"solve({_clean(sides[0])} = {_clean(sides[1]) if rhs is not None else '0'}, {var})"
        self._check_degree(expr)
        sols = self._solve_fast(expr, var)
        if sols is None:
            sols = self._bounded(lambda: self._solve_general(expr, var))
        return _format_solutions(var, sols), "equation", shown, None

    @staticmethod
    def _solve_fast(expr: sp.Expr, var: sp.Symbol) -> list[sp.Expr] | None:
        """Closed-form roots of a polynomial of degree <= 2 with rational coefficients, else None."""
        if expr.free_symbols != {var} or not expr.is_polynomial(var):
            if not expr.free_symbols:
                raise _Decline("unsupported", "the unknown cancels out of the equation")
            return None
        poly = sp.Poly(expr, var)
        if not poly.domain.is_QQ and not poly.domain.is_ZZ:
            return None
        coeffs = poly.all_coeffs()
        degree = len(coeffs) - 1
        if degree == 1:
            return [-coeffs[1] / coeffs[0]]
        if degree == 2:
            a, b, c = coeffs
            root = sp.sqrt(b * b - 4 * a * c)
            return [(-b - root) / (2 * a), (-b + root) / (2 * a)]
        return None

    def _solve_general(self, expr: sp.Expr, var: sp.Symbol) -> list[sp.Expr]:
        num, den = sp.fraction(sp.together(expr))
        if num.is_polynomial(var) and den.is_polynomial(var):
            poly = sp.Poly(num, var)
            if poly.degree() <= 0:
                if poly.is_zero:
                    raise _Decline("unsupported", "identity: every value is a solution")
                return []
            if poly.degree() > self.max_symbolic_degree:
                raise _Decline("bounds", "polynomial degree too large")
            found = sp.roots(poly)
            if sum(found.values()) != poly.degree():
                raise _Decline("unsupported", "roots have no closed form")
            sols = [r for r in found if sp.simplify(den.subs(var, r)) != 0]
            return [sp.simplify(r) if not r.is_Rational else r for r in sols]
        result = sp.solveset(expr, var, domain=sp.S.Reals)
        if not isinstance(result, sp.FiniteSet):
            raise _Decline("unsupported", "solution set is not a finite set")
        return list(result.args)

    # -- calculus -----------------------------------------------------------------------------------------
    def _pick_var(self, parsed: ParsedExpr, var_name: str | None) -> sp.Symbol:
        if var_name is not None:
            return sp.Symbol(var_name)
        free = parsed.expr.free_symbols
        if len(free) == 1:
            return next(iter(free))  # type: ignore[return-value]
        x = sp.Symbol("x")
        if not free or x in free:
            return x
        raise _Decline("not_math", "say which variable ('with respect to y')")

    def _derivative(self, text: str, var_name: str | None, order: int,
                    lim: ParseLimits) -> tuple[str, str, str, str | None]:
        parsed = parse_expression(text, lim)
        var = self._pick_var(parsed, var_name)

        def work() -> str:
            result = sp.diff(parsed.expr, var, order)
            if result.has(sp.Derivative):
                raise _Decline("unsupported", "derivative has no closed form")
            return str(result)

        answer = work() if parsed.tokens <= 40 else self._bounded(work)
        suffix = f", {order}" if order > 1 else ""
        return answer, "derivative", f"diff({_clean(text)}, {var}{suffix})", None

    def _integral(self, text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        bounds = None
        if m := _P_INT_BOUNDS.search(text):
            bounds = (parse_expression(m.group("a"), lim), parse_expression(m.group("b"), lim))
            text = text[: m.start()]
        var_name = None
        if m := _P_INT_WRT.search(text):
            var_name, text = m.group("v"), text[: m.start()]
        elif m := _P_INT_DX.search(text):
            var_name, text = m.group("v"), text[: m.start()]
        text = text.strip()
        parsed = parse_expression(text, lim)
        var = self._pick_var(parsed, var_name)
        self._check_degree(parsed.expr)
        if bounds is not None:
            lo, hi = bounds[0].expr, bounds[1].expr
            if lo.free_symbols or hi.free_symbols:
                raise _Decline("unsupported", "integration bounds must be numbers")

            def definite() -> tuple[str, str | None]:
                value = sp.integrate(parsed.expr, (var, lo, hi))
                if value.has(sp.Integral, sp.Piecewise) or value.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
                    raise _Decline("unsupported", "integral has no closed form or diverges")
                if value.free_symbols:
                    raise _Decline("unsupported", "definite integral depends on other variables")
                if value.is_Rational:
                    return self._number_answer(value, parsed.has_decimal)
                return str(value), str(sp.N(value, 15))

            answer, decimal = self._bounded(definite)
            return answer, "integral", f"integrate({_clean(text)}, ({var}, {lo}, {hi}))", decimal

        def indefinite() -> str:
            value = sp.integrate(parsed.expr, var)
            if value.has(sp.Integral, sp.Piecewise):
                raise _Decline("unsupported", "integral has no closed form")
            return f"{value} + C"

        return self._bounded(indefinite), "integral", f"integrate({_clean(text)}, {var})", None

    # -- algebra ------------------------------------------------------------------------------------------
    def _transform(self, kind: str, text: str, lim: ParseLimits) -> tuple[str, str, str, str | None]:
        parsed = parse_expression(text, lim)
        expr = parsed.expr
        shown = f"{kind}({_clean(text)})"
        if kind == "factor" and not expr.free_symbols:
            return self._factor_integer(expr), "factor", shown, None
        self._check_degree(expr)
        if kind == "factor":
            fast = _factor_fast(expr)
            if fast is not None:
                return fast, "factor", shown, None
            return self._bounded(lambda: str(sp.factor(expr))), "factor", shown, None
        if kind == "expand":
            return self._bounded(lambda: str(sp.expand(expr))), "expand", shown, None
        return self._bounded(lambda: str(_simplify(expr))), "simplify", shown, None

    def _factor_integer(self, value: sp.Expr) -> str:
        if not value.is_Integer or abs(value) < 2:  # type: ignore[operator]
            raise _Decline("not_math", "only integers >= 2 (or polynomials) can be factorised")
        n = int(value)  # type: ignore[arg-type]
        if len(str(abs(n))) > self.max_factor_digits:
            raise _Decline("bounds", f"integer longer than {self.max_factor_digits} digits")

        def work() -> str:
            parts = [f"{p}**{k}" if k > 1 else str(p) for p, k in sorted(sp.factorint(abs(n)).items())]
            return ("-" if n < 0 else "") + "*".join(parts)

        return self._bounded(work)


def _factor_fast(expr: sp.Expr) -> str | None:
    """Factor a univariate polynomial of degree <= 4 with rational coefficients inline; else None."""
    free = expr.free_symbols
    if len(free) != 1:
        return None
    var = next(iter(free))
    if not expr.is_polynomial(var):
        return None
    poly = sp.Poly(expr, var)
    if poly.degree() > 4 or not (poly.domain.is_ZZ or poly.domain.is_QQ):
        return None
    coeff, factors = poly.factor_list()
    return str(sp.Mul(coeff, *[f.as_expr() ** k for f, k in factors]))


def _simplify(expr: sp.Expr) -> sp.Expr:
    free = expr.free_symbols
    if free and expr.is_rational_function(*free):
        candidates = [sp.cancel(expr), sp.factor(expr)]
        return min(candidates, key=sp.count_ops)
    return sp.simplify(expr)


def _clean(text: str) -> str:
    return " ".join(text.split())



@functools.lru_cache(maxsize=1)
def default_math_engine() -> MathEngine:
    """A shared engine with default settings (immutable, so safe to share between threads)."""
    return MathEngine()
