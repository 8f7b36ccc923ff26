"""A small evaluator for the CEL rules CRDs carry in ``x-kubernetes-validations``.

It covers what validation rules in practice use: ``self``/``oldSelf``, field access, ``has()``,
comparisons, arithmetic, ``&& || ! ?:``, ``in``, ``size()``, string methods, ``all``/``exists``/
``exists_one``/``map``/``filter`` macros and ``timestamp()``/``duration()``.  Anything else raises
:class:`Unsupported` and the caller accepts the rule, logging it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any


class Unsupported(Exception):
    """The rule uses syntax or functions this evaluator does not implement."""


class EvalError(Exception):
    """The rule is understood but failed at runtime (e.g. ``no such key``), like a real CEL error."""


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[uU]?|0x[0-9a-fA-F]+)
    |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]{}])
    |(?P<id>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

Node = tuple[Any, ...]


def _tokenize(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot tokenize at {text[pos:]!r}")
        pos = m.end()
        if m.group("num"):
            raw = m.group("num").rstrip("uU")
            out.append(("lit", float(raw) if "." in raw else int(raw, 0)))
        elif m.group("str"):
            out.append(("lit", bytes(m.group("str")[1:-1], "utf-8").decode("unicode_escape")))
        elif m.group("op"):
            out.append(("op", m.group("op")))
        else:
            ident = m.group("id")
            if ident in ("true", "false"):
                out.append(("lit", ident == "true"))
            elif ident == "null":
                out.append(("lit", None))
            elif ident == "in":
                out.append(("op", "in"))
            else:
                out.append(("id", ident))
    out.append(("end", None))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, Any]:
        tok = self.toks[self.i]
        if value is not None and tok != ("op", value):
            raise Unsupported(f"expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def accept(self, value: str) -> bool:
        if self.peek() == ("op", value):
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.expr()
        if self.peek()[0] != "end":
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return node

    def expr(self) -> Node:
        cond = self.binary(0)
        if self.accept("?"):
            a = self.expr()
            self.take(":")
            b = self.expr()
            return ("cond", cond, a, b)
        return cond

    LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!=", "<", "<=", ">", ">=", "in"),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self.LEVELS[level]:
            op = self.take()[1]
            node = ("bin", op, node, self.binary(level + 1))
        return node

    def unary(self) -> Node:
        if self.accept("!"):
            return ("not", self.unary())
        if self.accept("-"):
            return ("neg", self.unary())
        return self.member()

    def args(self) -> list[Node]:
        out: list[Node] = []
        if self.accept(")"):
            return out
        while True:
            out.append(self.expr())
            if self.accept(")"):
                return out
            self.take(",")

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                kind, name = self.take()
                if kind != "id":
                    raise Unsupported(f"bad member {name!r}")
                if self.accept("("):
                    node = ("call", name, node, self.args())
                else:
                    node = ("field", node, name)
            elif self.accept("["):
                idx = self.expr()
                self.take("]")
                node = ("index", node, idx)
            else:
                return node

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "lit":
            return ("lit", value)
        if kind == "id":
            if self.accept("("):
                return ("call", value, None, self.args())
            return ("var", value)
        if (kind, value) == ("op", "("):
            node = self.expr()
            self.take(")")
            return node
        if (kind, value) == ("op", "["):
            items: list[Node] = []
            if not self.accept("]"):
                while True:
                    items.append(self.expr())
                    if self.accept("]"):
                        break
                    self.take(",")
            return ("list", items)
        raise Unsupported(f"unexpected token {value!r}")


_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")


def _duration(text: str) -> timedelta:
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise EvalError(f"invalid duration {text!r}")
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    return timedelta(seconds=sum(float(a) * unit[b] for a, b in parts))


def _timestamp(text: Any) -> datetime:
    if isinstance(text, datetime):
        return text
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise EvalError(f"invalid timestamp {text!r}") from exc


MACROS = {"all", "exists", "exists_one", "map", "filter"}


class _Evaluator:
    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env

    # Complexity kept: the evaluator's dispatch over CEL node kinds: one branch per kind reads best.
    def ev(self, node: Node) -> Any:  # noqa: C901
        tag = node[0]
        if tag == "lit":
            return node[1]
        if tag == "var":
            if node[1] not in self.env:
                raise Unsupported(f"unknown identifier {node[1]!r}")
            return self.env[node[1]]
        if tag == "list":
            return [self.ev(n) for n in node[1]]
        if tag == "field":
            target = self.ev(node[1])
            if not isinstance(target, dict):
                raise EvalError(f"no such key: {node[2]}")
            if node[2] not in target:
                raise EvalError(f"no such key: {node[2]}")
            return target[node[2]]
        if tag == "index":
            target, idx = self.ev(node[1]), self.ev(node[2])
            try:
                return target[idx]
            except (KeyError, IndexError, TypeError):
                raise EvalError(f"no such key: {idx}") from None
        if tag == "not":
            return not self._bool(self.ev(node[1]))
        if tag == "neg":
            return -self.ev(node[1])
        if tag == "cond":
            return self.ev(node[2]) if self._bool(self.ev(node[1])) else self.ev(node[3])
        if tag == "bin":
            return self.binop(node[1], node[2], node[3])
        if tag == "call":
            return self.call(node[1], node[2], node[3])
        raise Unsupported(tag)

    @staticmethod
    def _bool(value: Any) -> bool:
        if not isinstance(value, bool):
            raise EvalError(f"no such overload: expected bool, got {type(value).__name__}")
        return value

    # Complexity kept: one branch per CEL operator, each with the language's own type rules.
    def binop(self, op: str, left: Node, right: Node) -> Any:  # noqa: C901
        if op == "&&":
            return self._bool(self.ev(left)) and self._bool(self.ev(right))
        if op == "||":
            return self._bool(self.ev(left)) or self._bool(self.ev(right))
        a, b = self.ev(left), self.ev(right)
        try:
            if op == "==":
                return a == b
            if op == "!=":
                return a != b
            if op == "<":
                return a < b
            if op == "<=":
                return a <= b
            if op == ">":
                return a > b
            if op == ">=":
                return a >= b
            if op == "in":
                return a in b
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                if isinstance(a, int) and isinstance(b, int):
                    if b == 0:
                        raise EvalError("division by zero")
                    return int(a / b)
                return a / b
            if op == "%":
                return a % b
        except TypeError as exc:
            raise EvalError(f"no such overload: {exc}") from None
        raise Unsupported(op)

    # Complexity kept: one branch per CEL function or macro the CRD rules use.
    def call(self, name: str, target: Node | None, args: list[Node]) -> Any:  # noqa: C901
        if name == "has" and target is None:
            if len(args) != 1 or args[0][0] != "field":
                raise Unsupported("has() needs a field selection")
            obj = self.ev(args[0][1])
            return isinstance(obj, dict) and args[0][2] in obj
        if name in MACROS and target is not None:
            return self.macro(name, self.ev(target), args)
        values = ([self.ev(target)] if target is not None else []) + [self.ev(a) for a in args]
        if name == "size" and len(values) == 1:
            return len(values[0])
        if name == "int" and len(values) == 1:
            v = values[0]
            return int(v.timestamp()) if isinstance(v, datetime) else int(v)
        if name == "double" and len(values) == 1:
            return float(values[0])
        if name == "string" and len(values) == 1:
            return str(values[0]) if not isinstance(values[0], bool) else str(values[0]).lower()
        if name == "timestamp" and len(values) == 1:
            return _timestamp(values[0])
        if name == "duration" and len(values) == 1:
            return _duration(str(values[0]))
        if target is not None and isinstance(values[0], str):
            s, rest = values[0], values[1:]
            if name == "startsWith":
                return s.startswith(rest[0])
            if name == "endsWith":
                return s.endswith(rest[0])
            if name == "contains":
                return rest[0] in s
            if name == "matches":
                return re.search(rest[0], s) is not None
            if name == "lowerAscii":
                return s.lower()
            if name == "upperAscii":
                return s.upper()
            if name == "trim":
                return s.strip()
        if name == "matches" and target is None and len(values) == 2:
            return re.search(values[1], values[0]) is not None
        raise Unsupported(f"function {name}()")

    def macro(self, name: str, coll: Any, args: list[Node]) -> Any:
        if not args or args[0][0] != "var":
            raise Unsupported(f"{name}() needs an iteration variable")
        var = args[0][1]
        items = list(coll.keys()) if isinstance(coll, dict) else list(coll)

        def run(body: Node, item: Any) -> Any:
            saved = self.env.get(var, _UNSET)
            self.env[var] = item
            try:
                return self.ev(body)
            finally:
                if saved is _UNSET:
                    self.env.pop(var, None)
                else:
                    self.env[var] = saved

        if name == "all":
            return all(self._bool(run(args[1], i)) for i in items)
        if name == "exists":
            return any(self._bool(run(args[1], i)) for i in items)
        if name == "exists_one":
            return sum(1 for i in items if self._bool(run(args[1], i))) == 1
        if name == "map":
            if len(args) == 3:
                return [run(args[2], i) for i in items if self._bool(run(args[1], i))]
            return [run(args[1], i) for i in items]
        if name == "filter":
            return [i for i in items if self._bool(run(args[1], i))]
        raise Unsupported(name)


_UNSET = object()
_CACHE: dict[str, Node] = {}


KNOWN_FUNCTIONS = {
    "has",
    "size",
    "int",
    "double",
    "string",
    "timestamp",
    "duration",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "lowerAscii",
    "upperAscii",
    "trim",
    *MACROS,
}


def _check_calls(node: Any) -> None:
    if isinstance(node, tuple):
        if node and node[0] == "call" and node[1] not in KNOWN_FUNCTIONS:
            raise Unsupported(f"function {node[1]}()")
        for part in node:
            _check_calls(part)
    elif isinstance(node, list):
        for part in node:
            _check_calls(part)


def compile_rule(rule: str) -> Node:
    """Parse ``rule``; raises Unsupported for syntax or functions outside the supported subset."""
    if rule not in _CACHE:
        node = _Parser(rule).parse()
        _check_calls(node)
        _CACHE[rule] = node
    return _CACHE[rule]


def evaluate(rule: str, self_value: Any, old_value: Any = None) -> Any:
    """Evaluate ``rule`` with ``self`` (and ``oldSelf``) bound; raises Unsupported/EvalError."""
    node = compile_rule(rule)
    env: dict[str, Any] = {"self": self_value, "oldSelf": old_value}
    try:
        return _Evaluator(env).ev(node)
    except RecursionError as exc:
        raise Unsupported("rule too deep") from exc
