"""Integer expressions: trees, a parser, a printer, one-step reductions, digit-level work.

The calculator and multiplication tasks render chain-of-thought traces with this
module, and check them with it too.  A trace is a list of steps separated by "=";
each step is one reduction of the previous expression: one operation whose two
operands are numbers is replaced by its result.  A step may start with its
digit-level work in brackets, on every multi-digit * and / (`full`) or only on the
ones a small model cannot learn in one step (`mixed`: a product of two multi-digit
numbers, a division of a 4+-digit value):

    prompt  12+34*56=               7*8+1904/56=
    steps   12+1904=1916            56+1904/56=56+34=90
    mixed   [34*6=204,34*50=1700,204+1700=1904]12+1904=1916
                                    56+1904/56=[190/56=3r22,224/56=4r0]56+34=90
    full    (as mixed here; also 12*3 or 48/4 get their work)

Numbers can be written least-significant digit first (`Syntax.reverse`); a
negative number keeps its sign in front ("-7" reversed is "-7", -123 is "-321").
A negative number that is not at the start of an expression or of a group is
wrapped in parentheses: "2*(-3)".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from tasks.base import Fault

PREC = {"+": 1, "-": 1, "*": 2, "/": 2}

# Bounds on what `Syntax.parse` accepts, whoever wrote the text (a user's prompt, a model's
# trace): the parser, the evaluator and the trace checker recurse once per level of nesting and
# per operation of a chain, and Python refuses to print an int of more than 4300 digits. Within
# them every function here is quick; beyond them the text is an ExprError, never a RecursionError.
MAX_DEPTH = 64  # parentheses nested inside each other
MAX_OPS = 256  # operations in one expression
MAX_DIGITS = 1000  # digits in one number


class ExprError(ValueError):
    """A malformed expression, or one whose value is undefined (division by zero)."""


@dataclass(frozen=True)
class Num:
    value: int


@dataclass(frozen=True)
class Bin:
    op: str
    left: "Node"
    right: "Node"


Node = Union[Num, Bin]


def apply(op: str, a: int, b: int, division: str = "exact") -> int:
    """a op b on Python integers; division is `exact` (must divide) or `floor` (Python's //)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ExprError(f"division by zero in {_short(str(a))}/{b}")
    if division == "exact" and a % b:
        raise ExprError(f"{_short(str(a))}/{_short(str(b))} does not divide exactly (use division=floor for //)")
    return a // b


def value(node: Node, division: str = "exact") -> int:
    if isinstance(node, Num):
        return node.value
    return apply(node.op, value(node.left, division), value(node.right, division), division)


def count_ops(node: Node) -> int:
    return 0 if isinstance(node, Num) else 1 + count_ops(node.left) + count_ops(node.right)


def literals(node: Node) -> list[int]:
    return [node.value] if isinstance(node, Num) else literals(node.left) + literals(node.right)


def operators(node: Node) -> list[str]:
    return [] if isinstance(node, Num) else operators(node.left) + [node.op] + operators(node.right)


@dataclass(frozen=True)
class Syntax:
    """How expressions are written: precedence (`standard` or `left`) and digit order."""

    precedence: str = "standard"  # standard: * / before + -; left: strictly left to right
    reverse: bool = False  # numbers least-significant digit first
    plain_division: bool = False  # long-division work in ordinary digit order regardless of `reverse`
    division_subtract: bool = False  # long-division items also show q*b subtracted: 195/115=1r195-115=80
    mixed_division_digits: int = 4  # cot=mixed: a division of a value with this many digits or more is hard
    sign_work: bool = False  # a + or - with a negative result first writes the positive difference

    # ---- printing ----------------------------------------------------------------------------
    def num(self, v: int) -> str:
        s = str(abs(v))
        if self.reverse:
            s = s[::-1]
        return "-" + s if v < 0 else s

    def render(self, node: Node) -> str:
        return self._render(node, True)

    def _render(self, node: Node, start: bool) -> str:
        if isinstance(node, Num):
            s = self.num(node.value)
            return s if node.value >= 0 or start else f"({s})"
        left = self._render(node.left, start)
        if self._needs_parens(node, node.left, right=False):
            left = "(" + self._render(node.left, True) + ")"
        right = self._render(node.right, False)
        if self._needs_parens(node, node.right, right=True):
            right = "(" + self._render(node.right, True) + ")"
        return f"{left}{node.op}{right}"

    def _needs_parens(self, parent: Bin, child: Node, right: bool) -> bool:
        if isinstance(child, Num):
            return False
        if self.precedence == "left":
            return right
        return PREC[child.op] < PREC[parent.op] or (right and PREC[child.op] == PREC[parent.op])

    # ---- parsing -----------------------------------------------------------------------------
    def parse_num(self, text: str) -> int:
        neg = text.startswith("-")
        digits = text[1:] if neg else text
        if not digits or not digits.isdigit() or not digits.isascii():
            raise ExprError(f"not a number: {_short(text)!r}")
        if len(digits) > MAX_DIGITS:
            raise ExprError(f"a number of {len(digits)} digits (at most {MAX_DIGITS})")
        v = int(digits[::-1] if self.reverse else digits)
        return -v if neg else v

    def parse(self, text: str) -> Node:
        toks = _tokenize(text)
        # a cheap bound first: a "-" may be a number's sign, but there are at most 2 * ops + 1 of those
        if sum(t in PREC for t in toks) > 2 * MAX_OPS + 1:
            raise ExprError(f"more than {MAX_OPS} operations in one expression")
        depth = 0
        for t in toks:  # checked before the recursive descent, which would overflow the stack
            depth += (t == "(") - (t == ")")
            if depth > MAX_DEPTH:
                raise ExprError(f"parentheses nested more than {MAX_DEPTH} deep in {_short(text)!r}")
        node, i = self._expr(toks, 0, text)
        if i != len(toks):
            raise ExprError(f"unexpected {toks[i]!r} in {_short(text)!r}")
        if (n := count_ops(node)) > MAX_OPS:
            raise ExprError(f"{n} operations in one expression (at most {MAX_OPS})")
        return node

    def _expr(self, toks: list[str], i: int, text: str) -> tuple[Node, int]:
        if self.precedence == "left":
            return self._fold(toks, i, text, "+-*/", self._factor, first=True)
        return self._fold(toks, i, text, "+-", self._term, first=True)

    def _term(self, toks: list[str], i: int, text: str, first: bool) -> tuple[Node, int]:
        return self._fold(toks, i, text, "*/", self._factor, first)

    def _fold(self, toks: list[str], i: int, text: str, ops: str, operand, first: bool) -> tuple[Node, int]:
        """operand (op operand)* with ops, folded left-associatively."""
        node, i = operand(toks, i, text, first=first)
        while i < len(toks) and toks[i] in ops:
            op = toks[i]
            right, i = operand(toks, i + 1, text, first=False)
            node = Bin(op, node, right)
        return node, i

    def _factor(self, toks: list[str], i: int, text: str, first: bool) -> tuple[Node, int]:
        if i >= len(toks):
            raise ExprError(f"expression ends too early: {_short(text)!r}")
        t = toks[i]
        if t == "(":
            node, i = self._expr(toks, i + 1, text)
            if i >= len(toks) or toks[i] != ")":
                raise ExprError(f"unbalanced parentheses in {_short(text)!r}")
            return node, i + 1
        if t == "-" and first and i + 1 < len(toks) and toks[i + 1].isdigit():
            return Num(self.parse_num("-" + toks[i + 1])), i + 2
        if t.isdigit():
            return Num(self.parse_num(t)), i + 1
        raise ExprError(f"unexpected {t!r} in {_short(text)!r}")


def _tokenize(text: str) -> list[str]:
    toks: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isdigit() and c.isascii():
            j = i
            while j < len(text) and text[j].isdigit() and text[j].isascii():
                j += 1
            toks.append(text[i:j])
            i = j
        elif c in "+-*/()":
            toks.append(c)
            i += 1
        else:
            raise ExprError(f"unexpected character {c!r} in {_short(text)!r}")
    if not toks:
        raise ExprError("empty expression")
    return toks


def _short(text: str, most: int = 60) -> str:
    """Text quoted in an error message: a user error is one line, whatever was typed."""
    return text if len(text) <= most else text[: most - 1] + "…"


# ---- reductions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reduction:
    result: Node  # the whole expression after the reduction
    op: str
    a: int
    b: int
    value: int


def reductions(node: Node, division: str = "exact") -> list[Reduction]:
    """Every single-operation reduction of node, leftmost first (the canonical order).

    An operation that is undefined (division by zero, inexact exact division) is skipped."""
    if isinstance(node, Num):
        return []
    if isinstance(node.left, Num) and isinstance(node.right, Num):
        a, b = node.left.value, node.right.value
        try:
            v = apply(node.op, a, b, division)
        except ExprError:
            return []
        return [Reduction(Num(v), node.op, a, b, v)]
    out = [Reduction(Bin(node.op, r.result, node.right), r.op, r.a, r.b, r.value)
           for r in reductions(node.left, division)]
    out += [Reduction(Bin(node.op, node.left, r.result), r.op, r.a, r.b, r.value)
            for r in reductions(node.right, division)]
    return out


def first_reduction(node: Node, division: str = "exact") -> Reduction | None:
    """reductions(node, division)[0] (or None), without building the others: a long expression's
    trace takes one pass per step, not one per possible reduction."""
    if isinstance(node, Num):
        return None
    if isinstance(node.left, Num) and isinstance(node.right, Num):
        a, b = node.left.value, node.right.value
        try:
            v = apply(node.op, a, b, division)
        except ExprError:
            return None
        return Reduction(Num(v), node.op, a, b, v)
    r = first_reduction(node.left, division)
    if r is not None:
        return Reduction(Bin(node.op, r.result, node.right), r.op, r.a, r.b, r.value)
    r = first_reduction(node.right, division)
    if r is not None:
        return Reduction(Bin(node.op, node.left, r.result), r.op, r.a, r.b, r.value)
    return None


def canonical_steps(node: Node, division: str = "exact") -> list[Reduction]:
    """Reduce leftmost-first until a number is left; raises ExprError if a step is undefined."""
    steps = []
    while isinstance(node, Bin):
        first = first_reduction(node, division)
        if first is None:
            value(node, division)  # raises the specific error
            raise ExprError("expression cannot be reduced")
        steps.append(first)
        node = first.result
    return steps


# ---- digit-level work (cot=mixed|full) -------------------------------------------------------------

def place_values(m: int) -> list[int]:
    """Each digit of m (>= 0) at its place value, least significant first: 305 -> [5, 0, 300]."""
    return [int(d) * 10**i for i, d in enumerate(str(m)[::-1])]


def partial_products(a: int, m: int) -> list[int]:
    """a times each place value of m, least significant first; they sum to a*m: 12, 34 -> [48, 360].

    The schoolbook multiplication of both the calculator's digit-level work and the
    multiplication task's scratchpad."""
    return [a * part for part in place_values(m)]


def work(op: str, a: int, b: int, syn: Syntax) -> list[str]:
    """Digit-level work for one multi-digit * or /, on absolute values; [] when there is none.

    *: one partial product per digit of the multiplier (b, or a when b has one digit),
       then running sums:  34*56 -> 34*6=204, 34*50=1700, 204+1700=1904
    /: long division, one item per digit brought down from the first that divides:
       1904/56 -> 190/56=3r22, 224/56=4r0
    """
    a, b = abs(a), abs(b)
    f = syn.num
    if op == "*" and max(a, b) >= 10:
        m, other = (b, a) if b >= 10 else (a, b)
        items, total = [], None
        for part, p in zip(place_values(m), partial_products(other, m)):
            items.append(f"{f(other)}*{f(part)}={f(p)}")
            if total is None:
                total = p
            else:
                items.append(f"{f(total)}+{f(p)}={f(total + p)}")
                total += p
        return items
    if op == "/" and a >= 10 and b != 0:
        # long division runs most-significant digit first; plain_division writes its numbers so
        f = str if syn.plain_division else syn.num
        items, rem, started = [], 0, False
        digits = str(a)
        for k, d in enumerate(digits):
            cur = rem * 10 + int(d)
            if not started and cur < b and k < len(digits) - 1:
                rem = cur
                continue
            started = True
            q, rem = divmod(cur, b)
            # division_subtract writes the schoolbook check: the remainder as cur - q*b
            sub = f"{f(cur)}-{f(q * b)}=" if syn.division_subtract else ""
            items.append(f"{f(cur)}/{f(b)}={f(q)}r{sub}{f(rem)}")
        return items
    return []


# Which steps of a trace carry digit-level work, named as the calculator's `cot` option names
# them, so that one word means one thing from the option to the checker: "steps" none (one
# operation per step), "mixed" the hard steps only, "full" every multi-digit * and /.
TRACES = ("steps", "mixed", "full")


def hard(op: str, a: int, b: int, from_digits: int) -> bool:
    """A step a small model memorises instead of computing (issue 4's diagnosis of the calculator's
    errors): a product of two multi-digit numbers, or a division of a value of `from_digits`
    digits or more (Syntax.mixed_division_digits)."""
    a, b = abs(a), abs(b)
    return (op == "*" and a >= 10 and b >= 10) or (op == "/" and a >= 10 ** (from_digits - 1))


def sign_work(op: str, a: int, b: int, syn: Syntax) -> list[str]:
    """The work of a + or - step whose result is negative and whose terms have opposite signs:
    the positive difference of their magnitudes, larger first.  [] for any other step.

    With reversed numbers the sign comes before the digits that decide it, so a model that
    writes 63-70 in one step commits to a sign before it has compared the operands, and
    writes 7 without its sign (47 of the 58 +/- errors of the 99.01% run, docs/LOG.md).
    Written first, the difference is a plain subtraction with no final borrow:
    63-70  ->  [07-36=7]-7      -12+5  ->  [21-5=7]-7      (reversed numbers)"""
    if op not in "+-":
        return []
    t = b if op == "+" else -b  # a op b = a + t
    if a + t >= 0 or a * t >= 0:  # no sign to decide: a positive result, a zero term or terms of one sign
        return []
    big, small = max(abs(a), abs(t)), min(abs(a), abs(t))
    return [f"{syn.num(big)}-{syn.num(small)}={syn.num(big - small)}"]


def step_work(op: str, a: int, b: int, syn: Syntax, cot: str) -> list[str]:
    """The digit-level work a step carries in a trace of kind `cot` (TRACES): none (steps), on
    the hard steps only (mixed) or on every multi-digit * and / (full); with `syn.sign_work`,
    also the difference before a negative sum or difference (sign_work)."""
    if cot not in TRACES:
        raise ValueError(f"a trace's cot must be one of {', '.join(TRACES)}, got {cot!r}")
    if cot == "steps":
        return []
    if op in "+-":
        return sign_work(op, a, b, syn) if syn.sign_work else []
    if cot == "mixed" and not hard(op, a, b, syn.mixed_division_digits):
        return []
    return work(op, a, b, syn)


# ---- traces --------------------------------------------------------------------------------

def render_trace(node: Node, syn: Syntax, division: str, cot: str = "steps") -> str:
    """The steps from node to its value, joined by '='; the last step is the answer.  `cot`
    (TRACES) says which steps start with their digit-level work in brackets."""
    parts = []
    for r in canonical_steps(node, division):
        w = step_work(r.op, r.a, r.b, syn, cot)
        parts.append(("[" + ",".join(w) + "]" if w else "") + syn.render(r.result))
    return "=".join(parts) if parts else syn.num(value(node, division))


def split_trace(text: str) -> list[tuple[list[str] | None, str]]:
    """'[w1,w2]e1=e2' -> [(['w1','w2'], 'e1'), (None, 'e2')]; raises ExprError on bad brackets."""
    steps, bad = _split(text)
    if bad is not None:
        raise ExprError(bad)
    return steps


def _split(text: str) -> tuple[list[tuple[list[str] | None, str]], str | None]:
    """split_trace's steps, up to the first bad bracket, and what is wrong there (None: nothing),
    so that the checker can say which step a trace stops parsing at."""
    steps: list[tuple[list[str] | None, str]] = []
    i = 0
    while True:
        w = None
        if i < len(text) and text[i] == "[":
            j = text.find("]", i)
            if j < 0:
                return steps, "unclosed '[' in trace"
            w = text[i + 1 : j].split(",")
            i = j + 1
        j = text.find("=", i)
        step = text[i:] if j < 0 else text[i:j]
        if "[" in step or "]" in step:
            return steps, f"misplaced bracket in step {step!r}"
        steps.append((w, step))
        if j < 0:
            return steps, None
        i = j + 1


# What the checker calls each mistake (a tasks.base.Fault's kind), beyond the generic ones there
EXPR_FAULTS = {
    "arithmetic": "a step does one operation with a wrong result, and copies the rest right",
    "answer": "the last step does the last operation with a wrong result: a right trace, a wrong answer",
    "skip": "a step does more than one operation at once (fewer are left than one reduction leaves)",
    "rewrite": "a step is no single reduction: a number or operator miscopied, operations out of order",
    "work": "a step's result is right, its digit-level work in brackets is not",
    "overrun": "a step after the answer",
    "malformed": "the trace's brackets, or a step, do not parse",
    "unfinished": "every step is right, but the trace stops before its answer",
}


def trace_errors(start: Node, completion: str, syn: Syntax, division: str, cot: str = "steps") -> list[str]:
    """Check a trace step by step; [] when every step is one correct reduction of the previous one
    (with the canonical digit-level work where `cot` asks for it) and the last step is a number."""
    return [f.message for f in trace_faults(start, completion, syn, division, cot)]


def trace_faults(start: Node, completion: str, syn: Syntax, division: str, cot: str = "steps") -> list[Fault]:
    """trace_errors' findings, each with its step (from 1) and its kind (EXPR_FAULTS)."""
    steps, bad = _split(completion)
    if bad is not None:
        return [Fault(len(steps) + 1, "malformed", f"trace does not parse: {bad}")]
    if isinstance(start, Num):  # a bare number (`workbench ask RUN 42`): its trace is the number itself
        ok = len(steps) == 1 and not steps[0][0] and steps[0][1] == syn.num(start.value)
        return [] if ok else [Fault(1, "answer", f"{_short(completion)!r} is not the number "
                                                 f"{_short(syn.num(start.value))!r}")]
    faults, prev = [], start
    for k, (w, text) in enumerate(steps, 1):
        try:
            node = syn.parse(text)
        except ExprError as e:
            faults.append(Fault(k, "malformed", f"step {k} {text!r} does not parse: {e}"))
            break
        fault = _step_fault(k, text, prev, node, w or [], syn, division, cot)
        if fault is not None:
            faults.append(fault)
        prev = node
    if not faults and not isinstance(prev, Num):
        faults.append(Fault(len(steps) + 1, "unfinished", f"trace stops at {syn.render(prev)!r} before the answer"))
    return faults


def _step_fault(k: int, text: str, prev: Node, node: Node, got_work: list[str], syn: Syntax, division: str,
                cot: str) -> Fault | None:
    """What is wrong with step k (text, read as node) after prev, or None."""
    options = reductions(prev, division)
    match = next((r for r in options if r.result == node), None)
    if match is None:
        want = syn.render(options[0].result) if options else "(nothing: the previous step was the answer)"
        return Fault(k, _wrong_kind(prev, node),
                     f"step {k} {text!r} is not one correct reduction of {syn.render(prev)!r} (expected {want!r})")
    expected_work = step_work(match.op, match.a, match.b, syn, cot)
    if got_work != expected_work:
        return Fault(k, "work", f"step {k} work {','.join(got_work)!r} is not the digit-level work of "
                                f"{syn.num(match.a)}{match.op}{syn.num(match.b)} (expected {','.join(expected_work)!r})")
    return None


def _wrong_kind(prev: Node, node: Node) -> str:
    """The kind (EXPR_FAULTS) of a step, node, that is not one correct reduction of prev."""
    if isinstance(prev, Num):
        return "overrun"
    if _wrong_value(prev, node):
        return "answer" if isinstance(node, Num) else "arithmetic"
    return "skip" if count_ops(node) < count_ops(prev) - 1 else "rewrite"


def _wrong_value(prev: Node, node: Node) -> bool:
    """node is prev with one operation on two numbers replaced by a number: one reduction, but
    (as no correct one matched) with a wrong result; everything else is copied right."""
    if isinstance(prev, Num):
        return False
    if isinstance(prev.left, Num) and isinstance(prev.right, Num) and isinstance(node, Num):
        return True
    if not isinstance(node, Bin) or node.op != prev.op:
        return False
    return ((node.right == prev.right and _wrong_value(prev.left, node.left))
            or (node.left == prev.left and _wrong_value(prev.right, node.right)))
