"""A Casbin enforcer whose matcher is compiled once to Python bytecode instead of re-interpreted per line.

pycasbin parses the model's matcher on every call and walks its syntax tree for every policy
line (simpleeval), which costs ~40 µs a line: a first decision over two dozen lines took ~1 ms.
Here the matcher (from model.conf, never from a policy line) is checked against a short list of
allowed syntax — comparisons, and/or/not, names, attributes, constants and calls to Casbin's
registered functions — and compiled once; evaluating it is then a plain bytecode run per line.
Policy lines stay data: their values are bound as strings and never compiled, and `eval()` in a
matcher (Casbin's own dynamic rule feature) is refused outright.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

import casbin

from gateway.errors import ConfigError

_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.In,
    ast.NotIn,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Constant,
    ast.Call,
)


class CompiledMatcher:
    """A matcher expression compiled to bytecode; `eval(names)` as Casbin's expressions offer."""

    def __init__(self, source: str, functions: Mapping[str, Callable[..., Any]]) -> None:
        tree = ast.parse(source.strip(), mode="eval")
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED):
                raise ConfigError(
                    f"策略模型的匹配器含不允许的语法 (matcher syntax not allowed): "
                    f"{type(node).__name__} in {source!r}"
                )
            if isinstance(node, ast.Call) and not (
                isinstance(node.func, ast.Name) and node.func.id in functions
            ):
                raise ConfigError(
                    f"匹配器只能调用 Casbin 的注册函数 (unknown function): {source!r}"
                )
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                raise ConfigError(f"匹配器不能读取私有属性 (private attribute): {node.attr}")
        self._code = compile(tree, "<casbin matcher>", "eval")
        self._globals: dict[str, Any] = {"__builtins__": {}, **functions}

    def bind(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        self._globals.update(functions)

    def eval(self, names: dict[str, Any] | None = None) -> Any:
        return eval(self._code, self._globals, names or {})  # the syntax was checked above


class CompiledEnforcer(casbin.Enforcer):  # type: ignore[misc]
    """casbin.Enforcer with the matcher compiled once per model and function set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._compiled: dict[str, CompiledMatcher] = {}
        super().__init__(*args, **kwargs)
        matcher = self.model["m"]["m"].value
        if "eval(" in matcher:
            raise ConfigError(
                "策略模型不使用 eval() (the model must not use eval() in its matcher)"
            )
        self._get_expression(matcher, self.fm.get_functions())  # fail at start-up, not per request

    def _get_expression(
        self, expr: str, functions: Mapping[str, Callable[..., Any]] | None = None
    ) -> CompiledMatcher:
        functions = functions or {}
        matcher = self._compiled.get(expr)
        if matcher is None:
            # The same rewriting Casbin applies before handing the text to simpleeval.
            source = expr.replace("&&", " and ").replace("||", " or ")
            source = re.sub(r"!(?!=)", " not ", source)
            matcher = self._compiled[expr] = CompiledMatcher(source, functions)
        else:
            # Casbin rebuilds role functions per call (they close over the current role map).
            matcher.bind(functions)
        return matcher
