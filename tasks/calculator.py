"""Calculator chains over + - * / on integers, with optional chain-of-thought traces.

Worked example, `cot=steps` with the default reversed numbers:

    expression   12+7*3-5                       (standard precedence)
    prompt       "12+7*3-5="
    target       "21+12-5=33-5=82$"             i.e. 12+21-5 = 33-5 = 28

Each step performs exactly one operation, leftmost first in evaluation order;
the text after the last "=" is the answer.  `cot=none` gives just "82$";
`cot=full` adds digit-level work before a step that does a multi-digit * or /:

    prompt "34*56+1="   target "[43*6=402,43*05=0071,402+0071=4091]4091+1=5091$"
    prompt "1904/56="   target "[091/65=3r22,422/65=4r0]43$"
    (`division_digit_order=plain` writes long division the way it runs, most-significant
    digit first: "[190/56=3r22,224/56=4r0]43$"; `division_work=subtract` also writes
    each remainder's subtraction: "[091/65=3r091-861=22,422/65=4r422-422=0]43$")

`cot=mixed` spends that work only where one step cannot be learned at this scale (issue
4's diagnosis: 727 of the best cot=steps run's 786 errors): a product of two multi-digit
numbers, and a division of a 4+-digit value.  Everything else stays one operation per
step, as in cot=steps:

    prompt "34*56+1="   target "[43*6=402,43*05=0071,402+0071=4091]4091+1=5091$"   as full
    prompt "34*5+1="    target "071+1=171$"                                       as steps
    prompt "96/8+1="    target "21+1=31$"                                         as steps

`mixed_division_digits` (4) is where long division starts; 3 also gives the rows to a
3-digit division, the hardest one-step class left (a third of them wrong at 97%):

    prompt "870/6="     target "[8/6=1r2,72/6=4r3,03/6=5r0]541$"

`sign_work` (cot=mixed or full) writes a + or - whose result is negative as the positive
difference first, then the result with its sign, so the sign is no longer a guess made
before the digits that decide it:

    prompt "63-70="     target "[07-36=7]-7$"

Default format: every number in the target is written least-significant digit
first (`reverse_numbers=True`).  That is the order in which addition,
subtraction and multiplication produce digits, so each output digit depends
only on operand digits and a carry the model has already placed (the same reason
the addition task reverses its answer).  The prompt stays in ordinary notation:
it is what a user types.  Negative numbers keep the sign in front: -123 -> "-321".

Options:  min_ops..max_ops operations; operands of 1..max_digits digits (digit
count uniform, then value uniform); `ops`, a subset of "+-*/";
`precedence=standard|left` (left: pocket-calculator chains); `division=exact`
(every division leaves no remainder: divisors are drawn among the divisors of
the running value) or `floor` (Python's //); `parens`, the chance that a
problem groups a sub-chain in parentheses; `op_weights`, `n_ops_weights` and `digit_weights`,
relative odds of the operators, of the operation counts and of the operands' digit
counts (e.g. "1,1,3,1", "3,1,1" and "1,3" train on more short two-digit products;
evaluate with `--set task.op_weights= --set task.n_ops_weights= --set
task.digit_weights=` to score on the uniform mix).  `big_weight`, in training only:
the relative odds of a problem with a * or / step on a value longer than any
operand, an intermediate result such as the 4,332 of 76*57/12 (4 makes them
four times as likely as drawn; evaluation splits are never reweighted).  Such
steps are the hardest of the task and the rarest: 7% of 2-digit problems.

The `ood` split: chains longer than trained, ood_min_ops..ood_max_ops operations (by default
max_ops + 1 to 2 * max_ops: 4 to 6), every count as likely, operators and operands as in the
test split (op_weights and digit_weights apply, n_ops_weights and big_weight do not).  No
training problem has that many operations, so no ood problem is ever trained on; like every
task's ood split it is drawn without the held-out hash (tasks/base.py: Task.problems).
`workbench eval RUN --split ood --by n_ops` scores it by chain length.

Held out: 5% of expressions, by a salted hash of the prompt.  Buckets: n_ops,
max_digits (longest operand), ops (the operators used, e.g. "+*").
Scoring: exact match of the answer, plus `trace_valid`: every step is one
correct reduction of the previous one (tasks/expr.py).  With cot=none the trace
is the answer, so trace_valid equals correct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from tasks.base import Fault, Problems, Task, TaskConfig, parse_odds
from tasks.encode import Rendered, codepoints, render_strings
from tasks.expr import (
    MAX_DIGITS, MAX_OPS, TRACES, Bin, ExprError, Node, Num, Syntax, canonical_steps, literals, operators,
    render_trace, split_trace, trace_faults,
)
from tasks.expr import value as expr_value

COTS = ("none", *TRACES)  # none: the bare answer; the others are traces, in tasks/expr.py's words

# A typed prompt longer than this is refused before it is parsed: with it, no number along the
# way has more than about 256 digits, and tracing the longest prompt takes a fraction of a second
# (a trained model's block is far shorter anyway; `workbench ask` checks that afterwards).
MAX_PROMPT_CHARS = 256


@dataclass(frozen=True)
class CalculatorConfig(TaskConfig):
    min_ops: int = 1
    max_ops: int = 3
    max_digits: int = 2
    ops: str = "+-*/"
    op_weights: str = ""  # e.g. "1,1,3,1": relative odds of each operator in `ops`; "" = uniform
    n_ops_weights: str = ""  # e.g. "3,1,1": relative odds of min_ops..max_ops operations; "" = uniform
    digit_weights: str = ""  # e.g. "1,3": relative odds of 1..max_digits-digit operands; "" = uniform
    big_weight: float = 1.0  # training only: odds of a problem with a * or / on an intermediate value
    precedence: str = "standard"  # standard | left
    division: str = "exact"  # exact | floor
    parens: float = 0.0  # chance of one parenthesised sub-chain (problems with 2+ operations)
    cot: str = "steps"  # none | steps | mixed | full
    reverse_numbers: bool = True
    division_digit_order: str = "trace"  # long division's numbers: trace (as the trace's numbers) | plain
    division_work: str = "short"  # long-division rows: short (q and remainder) | subtract (also cur-q*b)
    mixed_division_digits: int = 4  # cot=mixed: long division for a dividend of this many digits or more
    sign_work: bool = False  # cot=mixed|full: a negative sum or difference first writes the positive one
    ood_min_ops: int = 0  # the ood split's fewest operations; 0: max_ops + 1
    ood_max_ops: int = 0  # the ood split's most operations; 0: 2 * max_ops (at least ood_min_ops)
    mask_prompt: bool = True
    # ---- old names (TaskConfig.renamed): read from old run records and --set, then None
    division_digits: str | None = None  # division_digit_order, by the name that read as a count of digits

    renamed: ClassVar[dict[str, str]] = {"division_digits": "division_digit_order"}

    def __post_init__(self) -> None:
        self.adopt_renamed()
        if not self.ops:
            raise ValueError("ops is empty: give at least one of + - * /")
        bad = sorted(set(self.ops) - set("+-*/"))
        if bad or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops must be distinct characters from '+-*/', got {self.ops!r}")
        if self.min_ops <= 0:
            raise ValueError(f"min_ops must be at least 1, got {self.min_ops}")
        if self.min_ops > self.max_ops:
            raise ValueError(f"min_ops ({self.min_ops}) is greater than max_ops ({self.max_ops})")
        if self.max_digits <= 0:
            raise ValueError(f"max_digits must be at least 1, got {self.max_digits}")
        if self.max_ops > MAX_OPS or (self.max_ops + 1) * self.max_digits > MAX_DIGITS:
            # a trace's numbers must stay parseable (tasks/expr.py): a product of max_ops + 1
            # operands has up to (max_ops + 1) * max_digits digits
            raise ValueError(f"(max_ops + 1) * max_digits must be at most {MAX_DIGITS} and max_ops at most "
                             f"{MAX_OPS}, got max_ops={self.max_ops}, max_digits={self.max_digits}")
        self.check_ood_ops()
        self.operator_odds()  # validates op_weights
        self.n_ops_odds()
        self.digit_odds()
        if self.precedence not in ("standard", "left"):
            raise ValueError(f"precedence must be 'standard' or 'left', got {self.precedence!r}")
        if self.division not in ("exact", "floor"):
            raise ValueError(f"division must be 'exact' or 'floor', got {self.division!r}")
        if self.cot not in COTS:
            raise ValueError(f"cot must be one of {', '.join(COTS)}, got {self.cot!r}")
        if self.division_digit_order not in ("trace", "plain"):
            raise ValueError(f"division_digit_order must be 'trace' or 'plain', got {self.division_digit_order!r}")
        if self.division_work not in ("short", "subtract"):
            raise ValueError(f"division_work must be 'short' or 'subtract', got {self.division_work!r}")
        if self.mixed_division_digits < 2:  # a 1-digit dividend has no rows to write
            raise ValueError(f"mixed_division_digits must be at least 2, got {self.mixed_division_digits}")
        if self.sign_work and self.cot in ("none", "steps"):
            raise ValueError(f"sign_work writes work in brackets, which cot={self.cot} has none of: use cot=mixed or full")
        if not 0.0 <= self.parens <= 1.0:
            raise ValueError(f"parens is a probability in [0, 1], got {self.parens}")
        if not self.big_weight >= 1.0:  # also refuses nan
            raise ValueError(f"big_weight is relative odds of at least 1 (1: as drawn), got {self.big_weight}")

    def check_ood_ops(self) -> None:
        """ValueError unless the ood split's operation counts, where given, are chains longer than
        trained that the parser still reads."""
        if self.ood_min_ops < 0 or self.ood_max_ops < 0:
            raise ValueError(f"ood_min_ops and ood_max_ops must be >= 0 (0: from max_ops), "
                             f"got {self.ood_min_ops} and {self.ood_max_ops}")
        if self.ood_min_ops and self.ood_min_ops <= self.max_ops:
            raise ValueError(f"ood_min_ops ({self.ood_min_ops}) must exceed max_ops ({self.max_ops}): "
                             "the ood split is chains longer than trained")
        if self.ood_max_ops and self.ood_max_ops <= self.max_ops:
            raise ValueError(f"ood_max_ops ({self.ood_max_ops}) must exceed max_ops ({self.max_ops}): "
                             "the ood split is chains longer than trained")
        if self.ood_min_ops and self.ood_max_ops and self.ood_min_ops > self.ood_max_ops:
            raise ValueError(f"ood_min_ops ({self.ood_min_ops}) is greater than ood_max_ops ({self.ood_max_ops})")
        if self.ood_min_ops or self.ood_max_ops:
            self.ood_ops()  # the parser's bounds

    def ood_ops(self) -> tuple[int, int]:
        """The ood split's fewest and most operations: those given, else max_ops + 1 to 2 * max_ops,
        cut to what a trace's parser reads.  ValueError when no longer chain fits those bounds."""
        most = min(MAX_OPS, MAX_DIGITS // self.max_digits - 1)  # as for max_ops: (ops + 1) * digits
        lo = self.ood_min_ops or self.max_ops + 1
        hi = self.ood_max_ops or max(lo, min(2 * self.max_ops, most))
        if hi > most:
            raise ValueError(f"the ood split's chains of {hi} operations pass the parser's bounds: (ops + 1) * "
                             f"max_digits must be at most {MAX_DIGITS} and ops at most {MAX_OPS}; "
                             "set task.ood_max_ops lower")
        return lo, hi

    def operator_odds(self) -> np.ndarray | None:
        """Probabilities of the operators in `ops`, or None for uniform (the default)."""
        return parse_odds("op_weights", self.op_weights, len(self.ops), f"one per operator in {self.ops!r}")

    def n_ops_odds(self) -> np.ndarray | None:
        """Probabilities of min_ops..max_ops operations, or None for uniform (the default)."""
        n = self.max_ops - self.min_ops + 1
        return parse_odds("n_ops_weights", self.n_ops_weights, n, f"one per count {self.min_ops}..{self.max_ops}")

    def digit_odds(self) -> np.ndarray | None:
        """Probabilities of 1..max_digits-digit operands, or None for uniform (the default)."""
        return parse_odds("digit_weights", self.digit_weights, self.max_digits, f"one per digit count 1..{self.max_digits}")


class CalculatorTask(Task):
    name: ClassVar[str] = "calculator"
    description: ClassVar[str] = "chains of + - * / on integers, with step-by-step traces"
    Config: ClassVar[type[TaskConfig]] = CalculatorConfig
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "ood")
    buckets: ClassVar[tuple[str, ...]] = ("n_ops", "max_digits", "ops")
    default_by: ClassVar[tuple[str, ...]] = ("n_ops",)
    key_columns: ClassVar[tuple[str, ...]] = ("key",)
    scores_traces: ClassVar[bool] = True  # trace_valid, also with cot=none (then it equals correct)

    def __init__(self, config: CalculatorConfig | None = None):
        super().__init__(config)
        c = self.config
        self.syntax = Syntax(c.precedence, c.reverse_numbers, c.division_digit_order == "plain",
                             c.division_work == "subtract", c.mixed_division_digits, c.sign_work)  # targets
        self.prompt_syntax = Syntax(c.precedence, False)  # what users type
        self._max_length: dict[int, int] = {}  # by the most operations a split has

    @property
    def chars(self) -> str:
        return "0123456789+-*/()=[],r"

    def levels(self) -> list[dict]:
        """Fewest operations on 1-digit operands, then one more digit per level, then one more
        operation per level: (1 op, 1 digit), (1 op, 2 digits), (2 ops), the task (3 ops) by default."""
        c = self.config
        digits = {"digit_weights": ""} if c.digit_weights else {}  # weights are per digit count
        counts = {"n_ops_weights": ""} if c.n_ops_weights else {}  # and per operation count
        levels = [{"max_ops": c.min_ops, "max_digits": d, **digits, **counts} for d in range(1, c.max_digits)]
        levels += [{"max_ops": n, **counts} for n in range(c.min_ops, c.max_ops)]
        return levels + [{}]

    # ---- sampling ------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, n: int, split: str) -> Problems:
        c = self.config
        if split == "ood":  # longer chains than trained, every count as likely: no weights apply
            lo, hi = c.ood_ops()
            gen = _Generator(c, rng, lo, hi, None)
            return self.from_nodes([gen.expression() for _ in range(n)])
        gen = _Generator(c, rng, c.min_ops, c.max_ops, c.n_ops_odds())
        if split != "train" or c.big_weight == 1.0:
            return self.from_nodes([gen.expression() for _ in range(n)])
        # reweight by rejection: a problem without a big step is kept with probability 1 / big_weight
        nodes: list[Node] = []
        while len(nodes) < n:
            node = gen.expression()
            if rng.random() * c.big_weight < 1.0 or has_big_step(node, c.max_digits, c.division):
                nodes.append(node)
        return self.from_nodes(nodes)

    def from_nodes(self, nodes: list[Node]) -> Problems:
        exprs = [self.prompt_syntax.render(nd) for nd in nodes]
        key = np.zeros((len(exprs), max((len(e) for e in exprs), default=1)), dtype=np.int64)
        for i, e in enumerate(exprs):
            key[i, : len(e)] = codepoints(e)
        ops = [operators(nd) for nd in nodes]
        trees = np.empty(len(nodes), dtype=object)
        trees[:] = nodes
        return Problems(
            expr=np.array(exprs, dtype=object), key=key, tree=trees,
            n_ops=np.array([len(o) for o in ops], dtype=np.int64),
            max_digits=np.array([max(len(str(abs(v))) for v in literals(nd)) for nd in nodes], dtype=np.int64),
            ops=np.array(["".join(op for op in "+-*/" if op in o) for o in ops], dtype=object),
        )

    def max_length(self, splits=("train",)) -> int:
        """Longest rendered problem of the splits: the worst of many samples with the most
        operations a split has (max_ops; the ood split's ood_max_ops), +15%."""
        most = max(self.config.ood_ops()[1] if s == "ood" else self.config.max_ops for s in splits)
        if most not in self._max_length:
            self._max_length[most] = self._estimate_max_length(most)
        return self._max_length[most]

    def _estimate_max_length(self, n_ops: int) -> int:
        c = self.config
        # chains of n_ops operations, drawn as training draws them (big_weight's long steps too);
        # the ood counts are cleared, as max_ops may now reach them
        worst = CalculatorTask(c.replace(min_ops=n_ops, max_ops=n_ops, n_ops_weights="", digit_weights="",
                                         ood_min_ops=0, ood_max_ops=0))
        rng = np.random.default_rng(0)
        longest = max(int(worst.render(worst.sample(rng, 1024, "train")).length.max()) for _ in range(4))
        return int(longest * 1.15) + 2

    # ---- rendering and scoring -----------------------------------------------------------------
    def parse_prompt(self, text: str) -> Node:
        """A user's expression ("12+7*3-5" or "12+7*3-5=") -> its tree.

        Raises ExprError (a ValueError) for anything else: a malformed expression, a division by
        zero or (division=exact) with a remainder, a prompt longer than MAX_PROMPT_CHARS. Only
        the grammar of tasks/expr.py is read, so `9**9**9**9` is malformed, not a power tower."""
        text = text.strip()
        if len(text) > MAX_PROMPT_CHARS:
            raise ExprError(f"the expression has {len(text)} characters; at most {MAX_PROMPT_CHARS}")
        text = text.removesuffix("=")
        node = self.prompt_syntax.parse(text)
        expr_value(node, self.config.division)  # division by zero / inexact raise ExprError here
        return node

    def problems_from_prompts(self, prompts: list[str]) -> Problems:
        return self.from_nodes([self.parse_prompt(p) for p in prompts])

    def target(self, node: Node) -> str:
        c = self.config
        if c.cot == "none":
            return self.syntax.num(expr_value(node, c.division))
        return render_trace(node, self.syntax, c.division, c.cot)

    def render(self, p: Problems) -> Rendered:
        return render_strings([e + "=" for e in p["expr"]], [self.target(nd) for nd in p["tree"]])

    def solve(self, p: Problems) -> list[int]:
        return [evaluate_python(e, self.config.precedence, self.config.division) for e in p["expr"]]

    def parse_answer(self, text: str) -> int | None:
        try:
            return self.syntax.parse_num(split_trace(text)[-1][1])
        except ExprError:
            return None

    @property
    def has_trace(self) -> bool:
        return self.config.cot != "none"  # cot=none: the target is the bare answer

    def trace_errors(self, prompt: str, completion: str) -> list[str]:
        return [f.message for f in self.trace_faults(prompt, completion)]

    def trace_faults(self, prompt: str, completion: str) -> list[Fault]:
        """Each mistake of a completion with its step and kind (tasks/expr.py's EXPR_FAULTS)."""
        c = self.config
        start = self.parse_prompt(prompt)
        if c.cot == "none":
            got = self.parse_answer(completion)
            want = expr_value(start, c.division)
            return [] if got == want else [Fault(1, "answer", f"answer {completion!r} is not {self.syntax.num(want)!r}")]
        return trace_faults(start, completion, self.syntax, c.division, c.cot)


# ---- the generator ----------------------------------------------------------------------------

def has_big_step(node: Node, max_digits: int, division: str = "exact") -> bool:
    """Does evaluating node multiply or divide a value of more than max_digits digits (one that
    only an earlier step can have made)?"""
    top = 10**max_digits
    literal_operands = _literal_operands(node)
    if literal_operands is not None:  # every * and / reads two literals: no step needed (the sampler's hot path)
        return any(max(abs(a), abs(b)) >= top for a, b in literal_operands)
    return any(r.op in "*/" and max(abs(r.a), abs(r.b)) >= top for r in canonical_steps(node, division))


def _literal_operands(node: Node) -> list[tuple[int, int]] | None:
    """The operands of node's * and / when each of them reads two literals (what those steps then
    multiply or divide, whatever the order of the steps), else None.  A division by a literal 0
    gives None too, so that canonical_steps raises its error."""
    pairs: list[tuple[int, int]] = []
    stack = [node]
    while stack:
        nd = stack.pop()
        if isinstance(nd, Num):
            continue
        if nd.op in "*/":
            if not (isinstance(nd.left, Num) and isinstance(nd.right, Num)) or (nd.op == "/" and nd.right.value == 0):
                return None
            pairs.append((nd.left.value, nd.right.value))
        else:
            stack += (nd.left, nd.right)
    return pairs


def _cdf(odds: np.ndarray | None) -> np.ndarray | None:
    """What numpy's Generator.choice makes of p= on every call: the normalised cumulative sum."""
    if odds is None:
        return None
    cdf = np.asarray(odds, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    return cdf


def _draw(rng: np.random.Generator, n: int, cdf: np.ndarray | None, size: int | None = None) -> Any:
    """Index(es) in [0, n): uniform when cdf is None, drawn exactly as before the weights
    existed (so default data is unchanged), else from the weights' _cdf.  The same draws as
    rng.choice(n, size=size, p=odds) (one uniform each, searched on the right), without the
    checks of p that took a third of a calculator batch's sampling."""
    return rng.integers(0, n, size=size) if cdf is None else cdf.searchsorted(rng.random(size), side="right")


class _Generator:
    """Draws one expression tree; exact divisions pick their divisor among the divisors of the
    value they divide, so no problem is ever rejected for a remainder."""

    def __init__(self, c: CalculatorConfig, rng: np.random.Generator, min_ops: int, max_ops: int,
                 n_odds: np.ndarray | None):
        self.c, self.rng = c, rng
        self.min_ops, self.max_ops, self.n_odds = min_ops, max_ops, _cdf(n_odds)  # the split's operation counts
        self.odds, self.digit_odds = _cdf(c.operator_odds()), _cdf(c.digit_odds())

    def literal(self, nonzero: bool = False) -> int:
        k = 1 + int(_draw(self.rng, self.c.max_digits, self.digit_odds))
        lo = 10 ** (k - 1) if k > 1 else (1 if nonzero else 0)
        return int(self.rng.integers(lo, 10**k))

    def expression(self) -> Node:
        c, rng = self.c, self.rng
        n_ops = self.min_ops + int(_draw(rng, self.max_ops - self.min_ops + 1, self.n_odds))
        picks = _draw(rng, len(c.ops), self.odds, size=n_ops)
        ops = [c.ops[int(i)] for i in picks]
        items: list[Any] = [None] * (n_ops + 1)  # None: a literal
        if n_ops >= 2 and c.parens > 0 and rng.random() < c.parens:
            # group items i..j (2 or more, not all); never as a divisor, so division stays exact
            spans = [(i, j) for i in range(n_ops + 1) for j in range(i + 1, n_ops + 1)
                     if (i, j) != (0, n_ops) and (i == 0 or ops[i - 1] != "/")]
            i, j = spans[int(rng.integers(len(spans)))]
            items[i : j + 1] = [("group", [None] * (j - i + 1), ops[i:j])]
            ops = ops[:i] + ops[j:]
        return self.chain(items, ops)

    def item(self, it: Any) -> Node:
        return Num(self.literal()) if it is None else self.chain(it[1], it[2])

    def chain(self, items: list[Any], ops: list[str]) -> Node:
        if self.c.precedence == "left":
            node = self.item(items[0])
            for op, it in zip(ops, items[1:]):
                node = self.combine(op, node, it)
            return node
        terms, add_ops = [], []
        cur = self.item(items[0])
        for op, it in zip(ops, items[1:]):
            if op in "*/":
                cur = self.combine(op, cur, it)
            else:
                terms.append(cur)
                add_ops.append(op)
                cur = self.item(it)
        terms.append(cur)
        node = terms[0]
        for op, t in zip(add_ops, terms[1:]):
            node = Bin(op, node, t)
        return node

    def combine(self, op: str, left: Node, it: Any) -> Node:
        if op != "/":
            return Bin(op, left, self.item(it))
        if self.c.division == "floor":
            return Bin(op, left, Num(self.literal(nonzero=True)))
        top = 10**self.c.max_digits
        if isinstance(left, Num) and self.rng.random() < 0.5:
            # a literal dividend: draw the divisor, then a multiple of it (keeps quotients varied)
            d = self.literal(nonzero=True)
            q = int(self.rng.integers(0, (top - 1) // d + 1))
            return Bin(op, Num(d * q), Num(d))
        v = abs(expr_value(left, "exact"))
        if v == 0:
            return Bin(op, left, Num(self.literal(nonzero=True)))
        cand = np.arange(1, min(v, top - 1) + 1)
        divisors = cand[v % cand == 0]
        return Bin(op, left, Num(int(divisors[int(self.rng.integers(len(divisors)))])))


# ---- an independent reference evaluator -------------------------------------------------------

_SAFE = re.compile(r"^[0-9+\-*/()]+$")
MAX_EVAL_CHARS = 4000


def evaluate_python(expr: str, precedence: str = "standard", division: str = "exact") -> int:
    """Evaluate with Python itself (standard precedence) or a plain left-to-right loop.

    Exact division is computed with Fractions and must come out whole. Only what the task's own
    grammar reads is handed to Python: the text must parse (tasks/expr.py, within its bounds on
    nesting, operations and digits) before eval sees it, so `9**9**9**9`, `1//2` or `()` raise
    ExprError (a ValueError) here, never start a computation. The value is still Python's own."""
    if len(expr) > MAX_EVAL_CHARS:  # no value then has more digits than Python will print (4300)
        raise ExprError(f"an expression of {len(expr)} characters; at most {MAX_EVAL_CHARS}")
    if not _SAFE.match(expr):
        raise ExprError(f"not an arithmetic expression: {expr[:60]!r}")
    Syntax(precedence).parse(expr)  # raises ExprError for anything outside the grammar
    expr = re.sub(r"\d+", lambda m: str(int(m[0])), expr)  # "007" is 7 to the grammar, a SyntaxError to Python
    try:
        if precedence == "standard":
            if division == "floor":
                v = eval(expr.replace("/", "//"), {"__builtins__": {}})  # noqa: S307 (parsed above)
            else:
                v = eval(re.sub(r"(\d+)", r"F(\1)", expr), {"__builtins__": {}, "F": Fraction})  # noqa: S307
                if v.denominator != 1:
                    raise ExprError(f"{expr[:60]} is not a whole number")
            return int(v)
        return _left_to_right(re.findall(r"\d+|[-+*/()]", expr), division)
    except ZeroDivisionError:
        raise ExprError(f"division by zero in {expr[:60]!r}") from None


def _left_to_right(toks: list[str], division: str) -> int:
    def run(i: int) -> tuple[int, int]:
        acc, op, expect_value = None, None, True
        while i < len(toks) and toks[i] != ")":
            t = toks[i]
            if expect_value:
                if t == "(":
                    v, i = run(i + 1)
                elif t == "-" and acc is None:
                    v, i = -int(toks[i + 1]), i + 1
                else:
                    v = int(t)
                if acc is None:
                    acc = v
                elif op == "+":
                    acc += v
                elif op == "-":
                    acc -= v
                elif op == "*":
                    acc *= v
                else:
                    if division == "exact" and Fraction(acc, v).denominator != 1:
                        raise ExprError("inexact division")
                    acc //= v
                expect_value = False
            else:
                op, expect_value = t, True
            i += 1
        return acc, i

    return run(0)[0]
