"""The restricted script engine every loaded workflow runs with.

SpiffWorkflow's default environment is plain ``eval``/``exec`` with full builtins:
anyone who can deploy a diagram could run ``__import__('os').system(...)``.
Expressions and scripts are compiled with RestrictedPython instead, with a policy
that also refuses loops without a bound (``while``), function and class
definitions, imports and ``global``, and guards at run time: no attribute or name
starting with an underscore, a short list of builtins, bounded iteration and
bounded arithmetic, and a time limit per evaluation.

Compiling happens at deploy time (``definitions``) and again, cached, at run time,
so an expression that cannot compile never reaches a running case.
"""
from __future__ import annotations

import ast
import operator
import re
import threading
import time
from functools import lru_cache
from typing import Any, Callable

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr,
)
from RestrictedPython.transformer import RestrictingNodeTransformer
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

MAX_SOURCE = 20_000
MAX_ITERATIONS = 100_000
MAX_SEQUENCE = 100_000  # longest string or list a multiplication may build
MAX_POWER_BITS = 4_096
DEFAULT_TIME_LIMIT = 1.0  # seconds per evaluation


class ScriptError(Exception):
    """An expression or script that cannot be compiled or ran outside its limits."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's policy plus the product's own limits."""

    def _refuse(self, node, what):
        self.error(node, f"{what} is not allowed in process scripts")
        return node

    def visit_While(self, node):
        return self._refuse(node, "a while loop (no bound on its running time)")

    def visit_FunctionDef(self, node):
        return self._refuse(node, "defining a function")

    def visit_AsyncFunctionDef(self, node):
        return self._refuse(node, "defining a function")

    def visit_Lambda(self, node):
        return self._refuse(node, "lambda")

    def visit_ClassDef(self, node):
        return self._refuse(node, "defining a class")

    def visit_Import(self, node):
        return self._refuse(node, "import")

    def visit_ImportFrom(self, node):
        return self._refuse(node, "import")

    def visit_Global(self, node):
        return self._refuse(node, "global")

    def visit_Nonlocal(self, node):
        return self._refuse(node, "nonlocal")

    def visit_Try(self, node):
        return self._refuse(node, "try/except")

    def visit_With(self, node):
        return self._refuse(node, "with")

    def visit_BinOp(self, node):
        # Route * ** << through a guard so "'a' * 10**10" cannot eat the memory.
        node = self.node_contents_visit(node)
        name = {ast.Mult: "mul", ast.Pow: "pow", ast.LShift: "lshift"}.get(type(node.op))
        if name is None:
            return node
        call = ast.Call(func=ast.Name("_arith_", ast.Load()),
                        args=[ast.Constant(name), node.left, node.right], keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))


_LINE = re.compile(r"^Line (\d+): (.*)$", re.S)


def _raise_compile_errors(errors) -> None:
    first = errors[0]
    match = _LINE.match(first)
    if match and match.group(1) != "None":
        raise ScriptError(match.group(2).strip(), int(match.group(1)))
    raise ScriptError(first)


@lru_cache(maxsize=4096)
def compile_expression(source: str):
    """Compile a condition, timer or assignee expression; raises ScriptError with its line."""
    if not isinstance(source, str) or not source.strip():
        raise ScriptError("empty expression")
    if len(source) > MAX_SOURCE:
        raise ScriptError(f"expression longer than {MAX_SOURCE} characters")
    try:
        result = compile_restricted_eval(source.strip(), "<expression>", policy=_Policy)
    except SyntaxError as exc:
        raise ScriptError(f"syntax error: {exc.msg}", exc.lineno) from None
    if result.errors:
        _raise_compile_errors(result.errors)
    return result.code


@lru_cache(maxsize=4096)
def compile_script(source: str):
    """Compile a script task's body; raises ScriptError with its line."""
    if not isinstance(source, str) or not source.strip():
        raise ScriptError("empty script")
    if len(source) > MAX_SOURCE:
        raise ScriptError(f"script longer than {MAX_SOURCE} characters")
    try:
        result = compile_restricted_exec(source, "<script>", policy=_Policy)
    except SyntaxError as exc:
        raise ScriptError(f"syntax error: {exc.msg}", exc.lineno) from None
    if result.errors:
        _raise_compile_errors(result.errors)
    return result.code


# -- run-time guards ----------------------------------------------------------------

_budget = threading.local()


def _check_budget() -> None:
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise ScriptError("script ran longer than its time limit")
    _budget.steps = getattr(_budget, "steps", 0) + 1


def _getiter(obj):
    def bounded():
        for count, item in enumerate(obj):
            if count >= MAX_ITERATIONS:
                raise ScriptError(f"a loop ran more than {MAX_ITERATIONS} times")
            if count % 1000 == 0:
                _check_budget()
            yield item
    return bounded()


def _size(value) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


def _arith(op: str, left, right):
    if op == "mul":
        for seq, times in ((left, right), (right, left)):
            if _size(seq) and isinstance(times, int) and _size(seq) * max(times, 0) > MAX_SEQUENCE:
                raise ScriptError(f"result longer than {MAX_SEQUENCE}")
        return left * right
    if op == "pow":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and \
                abs(left).bit_length() * right > MAX_POWER_BITS:
            raise ScriptError("number too large")
        return left ** right
    if isinstance(right, int) and right > MAX_POWER_BITS:
        raise ScriptError("number too large")
    return left << right


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "|=": operator.ior, "&=": operator.iand,
}


def _inplacevar(op: str, left, right):
    if op == "*=":
        return _arith("mul", left, right)
    fn = _INPLACE.get(op)
    if fn is None:
        raise ScriptError(f"operator {op} is not allowed")
    return fn(left, right)


def _bounded_range(*args):
    r = range(*args)
    if len(r) > MAX_ITERATIONS:
        raise ScriptError(f"range longer than {MAX_ITERATIONS}")
    return r


_SAFE_BUILTINS: dict[str, Any] = {
    name: __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)
    for name in (
        "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "float", "int", "isinstance",
        "len", "list", "max", "min", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "zip",
        "True", "False", "None", "ValueError", "KeyError", "TypeError",
    )
}
_SAFE_BUILTINS["range"] = _bounded_range

_GUARDS: dict[str, Any] = {
    "__builtins__": _SAFE_BUILTINS,
    "_getattr_": safer_getattr,
    "_getitem_": lambda obj, key: obj[key],
    "_write_": full_write_guard,
    "_getiter_": _getiter,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_inplacevar_": _inplacevar,
    "_arith_": _arith,
}


class RestrictedEnvironment(BasePythonScriptEngineEnvironment):
    """A SpiffWorkflow script environment that runs only restricted, bounded code."""

    def __init__(self, functions: dict[str, Callable] | None = None, time_limit: float = DEFAULT_TIME_LIMIT):
        super().__init__(dict(functions or {}))
        self.time_limit = time_limit

    def _namespace(self, context: dict, external_context: dict | None) -> dict:
        namespace = {k: v for k, v in context.items() if not k.startswith("_")}
        namespace.update(external_context or {})
        namespace.update(self.globals)
        namespace.update(_GUARDS)
        return namespace

    def _run(self, code, namespace, mode):
        outer = getattr(_budget, "deadline", None)
        _budget.deadline = time.monotonic() + self.time_limit if outer is None else outer
        try:
            if mode == "eval":
                return eval(code, namespace)  # noqa: S307 - code compiled by RestrictedPython
            exec(code, namespace)  # noqa: S102 - code compiled by RestrictedPython
            return None
        finally:
            _budget.deadline = outer

    def evaluate(self, expression, context, external_context=None):
        code = compile_expression(expression)
        return self._run(code, self._namespace(context, external_context), "eval")

    def execute(self, script, context, external_context=None):
        clash = set(self.globals).intersection(context)
        if clash:
            raise ScriptError(f"task data overwrites script functions: {', '.join(sorted(clash))}")
        code = compile_script(script)
        namespace = self._namespace(context, external_context)
        self._run(code, namespace, "exec")
        reserved = set(self.globals) | set(_GUARDS) | set(external_context or {})
        for key, value in namespace.items():
            if key in reserved or key.startswith("_") or callable(value):
                continue
            context[key] = value
        return True

    def call_service(self, context, **kwargs):
        raise ScriptError("service tasks are not available")


def make_script_engine(functions: dict[str, Callable] | None = None,
                       time_limit: float = DEFAULT_TIME_LIMIT) -> PythonScriptEngine:
    return PythonScriptEngine(environment=RestrictedEnvironment(functions, time_limit))
