"""Generators of the project's own math query sets, with answers computed by sympy from the generating numbers.

Two sets, both reproducible from a seed (the scripts ``benchmarks/make_math_queries.py`` and
``benchmarks/make_math_phrasings.py`` write them as JSONL):

* :func:`math_dev_queries`: templated math queries of the kinds of the math dev set (arithmetic, percent,
  fraction, power, root, linear and quadratic equations, factor, derivative, integral, simplify) and non-math
  questions the engine must decline (``kind: not_math``, ``answer: None``). The evaluation harness uses it for
  the ``math`` set when no data folder has ``math_queries_dev.jsonl``.
* :func:`math_phrasings`: everyday phrasings of simple math ("two thirds of 90", "if 3x + 5 = 20, what is x?",
  "7 choose 3", "increase 80 by 15%", ...) written in four authors' styles, plus near-miss questions that are not
  math ("What is the average lifespan of a cat?"). Authors ``A`` and ``B`` form the ``tune`` half (the parser may
  be tuned on it), ``C`` and ``D`` the ``report`` half (never used for tuning; its results are reported).

Each row is ``{"id", "query", "kind", "answer", ...}``; answers are sympy ``str()`` forms (``"x = 9"``,
``"45/2"``, ``"25%"``), compared with :func:`~langchain_slm_router.evaluation.symbolic.answers_match`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import sympy as sp

x = sp.Symbol("x")

# ---------------------------------------------------------------------------------------------- the dev set
_NOT_MATH_DEV = (
    "Who painted the Mona Lisa?", "What is the tallest mountain in Africa?", "How do vaccines work?",
    "What is the plural of cactus?", "Who won the 2010 FIFA World Cup?", "What is 3M known for?",
    "Name a famous play by Shakespeare.", "What is the speed of sound called in aviation?",
    "Which planet has the most moons?", "What does DNA stand for?", "Who is Blink-182?",
    "What is the population of Canada?", "Translate good morning into French.", "What is the U2 spy plane?",
    "When did the Berlin Wall fall?", "What is the main ingredient of guacamole?", "Who discovered penicillin?",
    "Why is the sky blue?", "What is Area 51?", "Summarise the plot of Hamlet in two sentences.",
)


def _sign(n: int) -> str:
    return f"+ {n}" if n >= 0 else f"- {-n}"


def math_dev_queries(seed: int = 2024, per_kind: int = 27) -> list[dict[str, Any]]:
    """Templated math queries (``per_kind`` of each kind) and 20 non-math questions, answers by sympy."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []

    def add(kind: str, query: str, answer: Any) -> None:
        rows.append({"query": query, "kind": kind, "answer": None if answer is None else str(answer)})

    for _ in range(per_kind):
        a, b, c = rng.randint(100, 999), rng.randint(2, 99), rng.randint(2, 500)
        op = rng.choice("+-")
        expr = f"{a} {op} {b} * {c}"
        value = a + b * c if op == "+" else a - b * c
        add("arithmetic", rng.choice([f"Calculate {expr}", f"compute {expr}", f"{expr} = ?", f"What is {expr}?"]),
            value)
        p, n = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 75]), rng.randint(2, 200) * 10
        add("percent", rng.choice([f"What is {p}% of {n}?", f"{p} percent of {n}"]), sp.Rational(p * n, 100))
        f1, f2 = (sp.Rational(rng.randint(1, 9), rng.randint(2, 12)) for _ in range(2))
        add("fraction", f"What is {f1.p}/{f1.q} + {f2.p}/{f2.q}?", f1 + f2)
        base, exp = rng.randint(2, 30), rng.randint(2, 11)
        add("power", f"What is {base}^{exp}?", sp.Integer(base) ** exp)
        r = rng.randint(2, 30)
        add("root", f"What is the square root of {r * r}?", r)
        k, sol, off = rng.randint(2, 12), rng.randint(-15, 15), rng.randint(-20, 20)
        rhs = k * sol + off
        add("linear_equation", rng.choice([f"Solve {k}x {_sign(off)} = {rhs}", f"solve for x: {k}*x {_sign(off)} = {rhs}",
                                           f"Find x if {k}x{'+' if off >= 0 else '-'}{abs(off)}={rhs}"]), f"x = {sol}")
        r1, r2 = rng.randint(-10, 10), rng.randint(-10, 10)
        poly = sp.expand((x - r1) * (x - r2))
        coeffs = sp.Poly(poly, x).all_coeffs()
        shown = f"x^2 {_sign(int(coeffs[1]))}x {_sign(int(coeffs[2]))} = 0"
        roots = ", ".join(str(v) for v in sorted({r1, r2}))
        add("quadratic", rng.choice([f"Solve {shown}", f"What are the roots of {shown}?"]), f"x = {roots}")
        add("factor", f"Factor {str(poly).replace('**', '^')}", sp.factor(poly))
        fn = rng.choice([x ** rng.randint(2, 5), sp.sin(x), sp.exp(2 * x), x * sp.exp(x), x ** 2 * sp.cos(x),
                         sp.log(x)])
        fn_text = str(fn).replace("**", "^")
        add("derivative", rng.choice([f"d/dx {fn_text}", f"What is the derivative of {fn_text}?",
                                      f"differentiate {fn_text} with respect to x"]), sp.diff(fn, x))
        gn = rng.choice([x ** rng.randint(2, 4), 1 / x, x * sp.sin(x), 3 * x ** 2 + 2 * x, sp.cos(x)])
        gn_text = str(gn).replace("**", "^")
        add("integral", rng.choice([f"Integrate {gn_text}", f"antiderivative of {gn_text}",
                                    f"What is the integral of {gn_text} dx?"]), f"{sp.integrate(gn, x)} + C")
        sn, sv = rng.choice([("sin(x)^2 + cos(x)^2", 1), ("(x^2 - 1)/(x - 1)", x + 1),
                             ("(x+1)^2 - (x-1)^2", 4 * x)])
        add("simplify", rng.choice([f"Simplify {sn}", f"simplify the expression {sn}"]), sv)
    for question in _NOT_MATH_DEV:
        add("not_math", question, None)
    return rows


# ---------------------------------------------------------------------------------------------- everyday phrasings
_FRACTION_WORDS = {Fraction(1, 2): "half", Fraction(1, 3): "a third", Fraction(2, 3): "two thirds",
                   Fraction(1, 4): "a quarter", Fraction(3, 4): "three quarters", Fraction(1, 5): "a fifth",
                   Fraction(2, 5): "two fifths", Fraction(3, 5): "three fifths", Fraction(1, 10): "a tenth",
                   Fraction(3, 8): "three eighths"}
_ORDINAL = {2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth"}

Template = Callable[[random.Random], tuple[str, Any]]


def _frac(rng: random.Random) -> tuple[Fraction, int]:
    f = rng.choice(list(_FRACTION_WORDS))
    return f, f.denominator * rng.randint(2, 40)


def _lin(rng: random.Random, var: str = "x") -> tuple[str, str]:
    k, sol, off = rng.randint(2, 9), rng.randint(-12, 20), rng.randint(1, 30) * rng.choice([1, -1])
    lhs = f"{k}{var} {'+' if off > 0 else '-'} {abs(off)}"
    return f"{lhs} = {k * sol + off}", f"{var} = {sol}"


def _nums(rng: random.Random, n: int, lo: int = 2, hi: int = 60) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def _listed(values: list[int], conj: str = "and") -> str:
    return ", ".join(str(v) for v in values[:-1]) + f" {conj} {values[-1]}"


def _mean(values: list[int]) -> sp.Rational:
    return sp.Rational(sum(values), len(values))


def _pct(part: int, whole: int) -> str:
    return f"{sp.Rational(100 * part, whole)}%"


def _pct_pair(rng: random.Random) -> tuple[int, int]:
    whole = rng.choice([20, 25, 40, 50, 60, 80, 120, 200, 250, 400])
    p = rng.choice([5, 10, 15, 20, 25, 30, 40, 50, 60, 75])
    return whole * p // 100, whole


def _change(rng: random.Random) -> tuple[int, int]:
    return rng.choice([40, 60, 80, 120, 150, 200, 250, 400, 640]), rng.choice([5, 10, 15, 20, 25, 30, 50])


# Each kind: {author: [templates]}; a template returns (query, answer).
_PHRASINGS: dict[str, dict[str, list[Template]]] = {
    "fraction_of": {
        "A": [lambda r: (lambda f, n: (f"What is {f.numerator}/{f.denominator} of {n}?", sp.Rational(f.numerator * n, f.denominator)))(*_frac(r)),
              lambda r: (lambda f, n: (f"{_FRACTION_WORDS[f]} of {n}", sp.Rational(f.numerator * n, f.denominator)))(*_frac(r))],
        "B": [lambda r: (lambda f, n: (f"what's {_FRACTION_WORDS[f]} of {n}", sp.Rational(f.numerator * n, f.denominator)))(*_frac(r)),
              lambda r: (lambda n: (f"What is half of {n}?", sp.Rational(n, 2)))(r.randint(3, 500))],
        "C": [lambda r: (lambda f, n: (f"How much is {_FRACTION_WORDS[f]} of {n}?", sp.Rational(f.numerator * n, f.denominator)))(*_frac(r)),
              lambda r: (lambda f, n: (f"Find {f.numerator}/{f.denominator} of {n}.", sp.Rational(f.numerator * n, f.denominator)))(*_frac(r))],
        "D": [lambda r: (lambda f, n: (f"Calculate {_FRACTION_WORDS[f]} of {n} please", sp.Rational(f.numerator * n, f.denominator)))(*_frac(r)),
              lambda r: (lambda n: (f"one half of {n}", sp.Rational(n, 2)))(r.randint(3, 500))],
    },
    "if_equation": {
        "A": [lambda r: (lambda e, s: (f"If {e}, what is x?", s))(*_lin(r)),
              lambda r: (lambda e, s: (f"if {e} then what is x", s))(*_lin(r))],
        "B": [lambda r: (lambda e, s: (f"If {e}, find y.", s))(*_lin(r, "y")),
              lambda r: (lambda e, s: (f"Given that {e}, what is the value of n?", s))(*_lin(r, "n"))],
        "C": [lambda r: (lambda e, s: (f"Suppose {e}. What is x?", s))(*_lin(r)),
              lambda r: (lambda e, s: (f"{e}. What's x?", s))(*_lin(r))],
        "D": [lambda r: (lambda e, s: (f"If {e}, then x equals what?", s))(*_lin(r)),
              lambda r: (lambda e, s: (f"When {e}, what does a equal?", s))(*_lin(r, "a"))],
    },
    "factorial": {
        "A": [lambda r: (lambda n: (f"What is {n} factorial?", sp.factorial(n)))(r.randint(3, 12)),
              lambda r: (lambda n: (f"factorial of {n}", sp.factorial(n)))(r.randint(3, 12))],
        "B": [lambda r: (lambda n: (f"compute {n} factorial", sp.factorial(n)))(r.randint(3, 12)),
              lambda r: (lambda n: (f"What's the factorial of {n}?", sp.factorial(n)))(r.randint(3, 12))],
        "C": [lambda r: (lambda n: (f"How much is {n} factorial?", sp.factorial(n)))(r.randint(3, 12)),
              lambda r: (lambda n: (f"Calculate the factorial of {n}.", sp.factorial(n)))(r.randint(3, 12))],
        "D": [lambda r: (lambda n: (f"{n} factorial = ?", sp.factorial(n)))(r.randint(3, 12)),
              lambda r: (lambda n: (f"find the factorial of {n} please", sp.factorial(n)))(r.randint(3, 12))],
    },
    "root": {
        "A": [lambda r: (lambda n: (f"square root of {n * n}", n))(r.randint(2, 40)),
              lambda r: (lambda n: (f"What is the cube root of {n ** 3}?", n))(r.randint(2, 12))],
        "B": [lambda r: (lambda n: (f"What's the sqrt of {n * n}?", n))(r.randint(2, 40)),
              lambda r: (lambda n: (f"find the square root of {n * n}", n))(r.randint(2, 40))],
        "C": [lambda r: (lambda n: (f"What is the positive square root of {n * n}?", n))(r.randint(2, 40)),
              lambda r: (lambda n: (f"Take the square root of {n * n}.", n))(r.randint(2, 40))],
        "D": [lambda r: (lambda n: (f"the square root of {n} is what?", sp.sqrt(n)))(r.choice([2, 3, 5, 8, 12, 18, 50])),
              lambda r: (lambda n: (f"How much is the cube root of {n ** 3}?", n))(r.randint(2, 12))],
    },
    "average": {
        "A": [lambda r: (lambda v: (f"What is the average of {_listed(v)}?", _mean(v)))(_nums(r, 3)),
              lambda r: (lambda v: (f"average of {', '.join(map(str, v))}", _mean(v)))(_nums(r, 4))],
        "B": [lambda r: (lambda v: (f"Find the mean of {_listed(v)}.", _mean(v)))(_nums(r, 3)),
              lambda r: (lambda v: (f"what's the average of {_listed(v)}", _mean(v)))(_nums(r, 5))],
        "C": [lambda r: (lambda v: (f"What is the arithmetic mean of {_listed(v)}?", _mean(v)))(_nums(r, 4)),
              lambda r: (lambda v: (f"Calculate the mean of {', '.join(map(str, v))}.", _mean(v)))(_nums(r, 3))],
        "D": [lambda r: (lambda v: (f"the average of {_listed(v)} is what?", _mean(v)))(_nums(r, 3)),
              lambda r: (lambda v: (f"Compute the average of {_listed(v, '&')}", _mean(v)))(_nums(r, 2))],
    },
    "choose": {
        "A": [lambda r: (lambda n, k: (f"What is {n} choose {k}?", sp.binomial(n, k)))(r.randint(5, 20), r.randint(2, 4)),
              lambda r: (lambda n, k: (f"{n} choose {k}", sp.binomial(n, k)))(r.randint(5, 20), r.randint(2, 4))],
        "B": [lambda r: (lambda n, k: (f"How many ways can you choose {k} from {n}?", sp.binomial(n, k)))(r.randint(5, 20), r.randint(2, 4)),
              lambda r: (lambda n, k: (f"compute {n} choose {k}", sp.binomial(n, k)))(r.randint(5, 20), r.randint(2, 4))],
        "C": [lambda r: (lambda n, k: (f"In how many ways can {k} items be chosen from {n}?", sp.binomial(n, k)))(r.randint(5, 20), r.randint(2, 4)),
              lambda r: (lambda n, k: (f"Calculate {n} choose {k}.", sp.binomial(n, k)))(r.randint(5, 20), r.randint(2, 4))],
        "D": [lambda r: (lambda n, k: (f"How many ways are there to pick {k} out of {n}?", sp.binomial(n, k)))(r.randint(5, 20), r.randint(2, 4)),
              lambda r: (lambda n, k: (f"what's {n} choose {k}", sp.binomial(n, k)))(r.randint(5, 20), r.randint(2, 4))],
    },
    "what_percent": {
        "A": [lambda r: (lambda p, w: (f"What percent of {w} is {p}?", _pct(p, w)))(*_pct_pair(r)),
              lambda r: (lambda p, w: (f"{p} is what percent of {w}?", _pct(p, w)))(*_pct_pair(r))],
        "B": [lambda r: (lambda p, w: (f"what percentage of {w} is {p}", _pct(p, w)))(*_pct_pair(r)),
              lambda r: (lambda p, w: (f"{p} out of {w} is what percent?", _pct(p, w)))(*_pct_pair(r))],
        "C": [lambda r: (lambda p, w: (f"What percentage is {p} of {w}?", _pct(p, w)))(*_pct_pair(r)),
              lambda r: (lambda p, w: (f"Express {p} out of {w} as a percentage.", _pct(p, w)))(*_pct_pair(r))],
        "D": [lambda r: (lambda p, w: (f"What percent is {p} of {w}?", _pct(p, w)))(*_pct_pair(r)),
              lambda r: (lambda p, w: (f"{p} is what percentage of {w}", _pct(p, w)))(*_pct_pair(r))],
    },
    "percent_change": {
        "A": [lambda r: (lambda n, p: (f"Increase {n} by {p}%.", sp.Rational(n * (100 + p), 100)))(*_change(r)),
              lambda r: (lambda n, p: (f"Decrease {n} by {p}%", sp.Rational(n * (100 - p), 100)))(*_change(r))],
        "B": [lambda r: (lambda n, p: (f"What is {n} increased by {p}%?", sp.Rational(n * (100 + p), 100)))(*_change(r)),
              lambda r: (lambda n, p: (f"what is {n} decreased by {p} percent", sp.Rational(n * (100 - p), 100)))(*_change(r))],
        "C": [lambda r: (lambda n, p: (f"Reduce {n} by {p}%.", sp.Rational(n * (100 - p), 100)))(*_change(r)),
              lambda r: (lambda n, p: (f"What do you get if you increase {n} by {p}%?", sp.Rational(n * (100 + p), 100)))(*_change(r))],
        "D": [lambda r: (lambda n, p: (f"{n} plus {p}% is what?", sp.Rational(n * (100 + p), 100)))(*_change(r)),
              lambda r: (lambda n, p: (f"Take {p}% off {n}.", sp.Rational(n * (100 - p), 100)))(*_change(r))],
    },
    "word_arithmetic": {
        "A": [lambda r: (lambda a, b: (f"What is the sum of {a} and {b}?", a + b))(*_nums(r, 2, 10, 999)),
              lambda r: (lambda a, b: (f"the product of {a} and {b}", a * b))(*_nums(r, 2, 2, 99))],
        "B": [lambda r: (lambda a, b: (f"Add {a} and {b}.", a + b))(*_nums(r, 2, 10, 999)),
              lambda r: (lambda a, b: (f"multiply {a} by {b}", a * b))(*_nums(r, 2, 2, 99))],
        "C": [lambda r: (lambda a, b: (f"What is the difference between {a + b} and {b}?", a))(*_nums(r, 2, 10, 999)),
              lambda r: (lambda a, b: (f"Subtract {b} from {a + b}.", a))(*_nums(r, 2, 10, 999))],
        "D": [lambda r: (lambda a, b: (f"Divide {a * b} by {b}.", a))(*_nums(r, 2, 2, 99)),
              lambda r: (lambda a, b: (f"what is the quotient of {a * b} and {b}", a))(*_nums(r, 2, 2, 99))],
    },
    "power_words": {
        "A": [lambda r: (lambda b, e: (f"What is {b} to the {e}th power?", sp.Integer(b) ** e))(r.randint(2, 12), r.randint(4, 9)),
              lambda r: (lambda b: (f"What is the square of {b}?", b * b))(r.randint(2, 99))],
        "B": [lambda r: (lambda b, e: (f"{b} to the power {e}", sp.Integer(b) ** e))(r.randint(2, 12), r.randint(2, 9)),
              lambda r: (lambda b: (f"the cube of {b}", b ** 3))(r.randint(2, 30))],
        "C": [lambda r: (lambda b, e: (f"What is {b} to the {_ORDINAL[e]} power?", sp.Integer(b) ** e))(r.randint(2, 12), r.randint(2, 8)),
              lambda r: (lambda b, e: (f"Raise {b} to the power of {e}.", sp.Integer(b) ** e))(r.randint(2, 12), r.randint(2, 8))],
        "D": [lambda r: (lambda b, e: (f"{b} raised to the {e}th power", sp.Integer(b) ** e))(r.randint(2, 12), r.randint(4, 9)),
              lambda r: (lambda b: (f"How much is {b} squared?", b * b))(r.randint(2, 99))],
    },
    "multiples": {
        "A": [lambda r: (lambda n: (f"What is double {n}?", 2 * n))(r.randint(3, 999)),
              lambda r: (lambda n: (f"twice {n}", 2 * n))(r.randint(3, 999))],
        "B": [lambda r: (lambda n: (f"what's triple {n}", 3 * n))(r.randint(3, 999)),
              lambda r: (lambda n: (f"What is {n} doubled?", 2 * n))(r.randint(3, 999))],
        "C": [lambda r: (lambda n: (f"Double {n}.", 2 * n))(r.randint(3, 999)),
              lambda r: (lambda n: (f"What is {n} halved?", sp.Rational(n, 2)))(r.randint(3, 999))],
        "D": [lambda r: (lambda n: (f"How much is twice {n}?", 2 * n))(r.randint(3, 999)),
              lambda r: (lambda n: (f"{n} tripled", 3 * n))(r.randint(3, 999))],
    },
    "remainder": {
        "A": [lambda r: (lambda a, b: (f"What is {a} mod {b}?", a % b))(r.randint(20, 999), r.randint(3, 19)),
              lambda r: (lambda a, b: (f"remainder when {a} is divided by {b}", a % b))(r.randint(20, 999), r.randint(3, 19))],
        "B": [lambda r: (lambda a, b: (f"{a} modulo {b}", a % b))(r.randint(20, 999), r.randint(3, 19)),
              lambda r: (lambda a, b: (f"What is the remainder when {a} is divided by {b}?", a % b))(r.randint(20, 999), r.randint(3, 19))],
        "C": [lambda r: (lambda a, b: (f"What is the remainder of {a} divided by {b}?", a % b))(r.randint(20, 999), r.randint(3, 19)),
              lambda r: (lambda a, b: (f"Find {a} mod {b}.", a % b))(r.randint(20, 999), r.randint(3, 19))],
        "D": [lambda r: (lambda a, b: (f"what remains when {a} is divided by {b}", a % b))(r.randint(20, 999), r.randint(3, 19)),
              lambda r: (lambda a, b: (f"Compute {a} modulo {b}", a % b))(r.randint(20, 999), r.randint(3, 19))],
    },
    "gcd_lcm": {
        "A": [lambda r: (lambda a, b: (f"What is the greatest common divisor of {a} and {b}?", sp.gcd(a, b)))(*_nums(r, 2, 4, 120)),
              lambda r: (lambda a, b: (f"lcm of {a} and {b}", sp.lcm(a, b)))(*_nums(r, 2, 2, 30))],
        "B": [lambda r: (lambda a, b: (f"gcd of {a} and {b}", sp.gcd(a, b)))(*_nums(r, 2, 4, 120)),
              lambda r: (lambda a, b: (f"Find the least common multiple of {a} and {b}.", sp.lcm(a, b)))(*_nums(r, 2, 2, 30))],
        "C": [lambda r: (lambda a, b: (f"What's the highest common factor of {a} and {b}?", sp.gcd(a, b)))(*_nums(r, 2, 4, 120)),
              lambda r: (lambda a, b: (f"Calculate the lowest common multiple of {a} and {b}.", sp.lcm(a, b)))(*_nums(r, 2, 2, 30))],
        "D": [lambda r: (lambda a, b: (f"GCF of {a} and {b}?", sp.gcd(a, b)))(*_nums(r, 2, 4, 120)),
              lambda r: (lambda a, b: (f"what is the LCM of {a}, {b}", sp.lcm(a, b)))(*_nums(r, 2, 2, 30))],
    },
}

# Questions that look like the phrasings above but are not math: the engine must decline them.
_NEAR_MISSES = {
    "A": ["What is the average lifespan of a house cat?", "What percent of the Earth is covered by water?",
          "Who is the product manager of the iPhone?", "What is half of a baseball team called?",
          "If it rains tomorrow, what should I wear?"],
    "B": ["What is the sum of all fears about?", "Double check the spelling of necessary.",
          "What is the square root of all evil?", "How many ways can you cook an egg?",
          "What is the mean of the word serendipity?"],
    "C": ["What is the average height of a giraffe?", "What percentage of adults drink coffee?",
          "Find the difference between a crocodile and an alligator.", "What is the factorial design in statistics?",
          "If x is a variable in algebra, what is it called?"],
    "D": ["What is the remainder of the year called in accounting?", "Take the train from Paris to Lyon.",
          "What is the power of a lens measured in?", "What is the common factor in these murders?",
          "How much is a dozen roses?"],
}

AUTHORS_TUNE = ("A", "B")
AUTHORS_REPORT = ("C", "D")


def math_phrasings(seed: int = 14, per_template: int = 2) -> list[dict[str, Any]]:
    """Everyday math phrasings by four authors (``per_template`` queries per template) plus near-miss questions.

    Rows: ``id``, ``query``, ``kind`` (``not_math`` for near misses), ``answer`` (``None`` for near misses),
    ``author`` and ``split`` (``"tune"`` for authors A and B, ``"report"`` for C and D).
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for kind, authors in _PHRASINGS.items():
        for author, templates in authors.items():
            for t, template in enumerate(templates):
                for i in range(per_template):
                    query, answer = template(rng)
                    rows.append({"id": f"{kind}:{author}{t}:{i}", "query": query, "kind": kind,
                                 "answer": str(answer), "author": author})
    for author, questions in _NEAR_MISSES.items():
        for i, question in enumerate(questions):
            rows.append({"id": f"not_math:{author}:{i}", "query": question, "kind": "not_math", "answer": None,
                         "author": author})
    for row in rows:
        row["split"] = "tune" if row["author"] in AUTHORS_TUNE else "report"
    return rows


__all__ = ["AUTHORS_REPORT", "AUTHORS_TUNE", "math_dev_queries", "math_phrasings"]
