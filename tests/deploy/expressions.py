"""Terraform's HCL expressions and IAM's CEL conditions, evaluated as they would be.

Terraform and IAM cannot run here, so the deploy tests evaluate what infra/
holds themselves: the validations of infra/variables.tf (the functions and
operators they use, with Terraform's exact decimal numbers and its logical
operators that evaluate both sides, as before 1.12), the locals of
infra/main.tf, and the CEL conditions of IAM bindings. Anything outside that
subset raises NotSupported, so a new construct fails a test instead of being
guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import hcl2
from lark import Token, Tree


class HclError(Exception):
    """An expression Terraform would fail to evaluate (what can() catches)."""


class NotSupported(Exception):
    """A construct this evaluator does not implement: extend it, do not guess."""


def _trees(node: Tree) -> list[Tree]:
    """A node's sub-expressions, without punctuation, newlines and comments."""
    return [
        child
        for child in node.children
        if isinstance(child, Tree) and child.data != "new_line_or_comment"
    ]


def _token(node: Tree) -> str:
    (token,) = [child for child in node.children if isinstance(child, Token)]
    return str(token)


def _unescape(text: str) -> str:
    """An HCL quoted string's escapes; `$${` and `%%{` stand for `${` and `%{`."""
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}

    def one(match: re.Match[str]) -> str:
        if match[1] not in escapes:
            raise NotSupported(f"string escape \\{match[1]}")
        return escapes[match[1]]

    text = text.replace("$${", "${").replace("%%{", "%{")
    return re.sub(r"\\(.)", one, text)


def _render(value: Any) -> str:
    """A value inside a string template, as Terraform writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        return format(value.numerator / value.denominator, "g")
    if isinstance(value, str):
        return value
    raise HclError(f"cannot include {type(value).__name__} in a string")


def value_of(python: Any) -> Any:
    """A Python value (a -var) as Terraform holds it: numbers exact."""
    if isinstance(python, bool) or python is None or isinstance(python, str):
        return python
    if isinstance(python, int | float):
        return Fraction(str(python))
    if isinstance(python, Mapping):
        return {key: value_of(item) for key, item in python.items()}
    if isinstance(python, list | tuple):
        return [value_of(item) for item in python]
    raise NotSupported(f"a -var of type {type(python).__name__}")


def _number(value: Any) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, Fraction):
        raise HclError(f"a number is required, got {value!r}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise HclError(f"a bool is required, got {value!r}")
    return value


def _string(value: Any) -> str:
    if isinstance(value, Fraction):
        return _render(value)
    if not isinstance(value, str):
        raise HclError(f"a string is required, got {value!r}")
    return value


def _tonumber(value: Any) -> Fraction:
    if isinstance(value, Fraction):
        return value
    text = _string(value)
    if text.lstrip("+-") == "Inf":
        raise NotSupported("infinite numbers")
    # What Terraform's tonumber() takes (checked against terraform console):
    # "1", "1.", ".5", "+1", "1e3"; not " 1", "1_0" or "0x10".
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text):
        raise HclError(f"cannot convert {text!r} to number")
    mantissa, _, exponent = text.lower().partition("e")
    return Fraction(mantissa.rstrip(".") or "0") * Fraction(10) ** int(exponent or 0)


def _regex(pattern: Any, text: Any) -> Any:
    """Terraform's regex(): the first match; its groups when it has any."""
    compiled = re.compile(_string(pattern))
    match = compiled.search(_string(text))
    if match is None:
        raise HclError(f"pattern {pattern!r} does not match {text!r}")
    if compiled.groupindex:
        return match.groupdict()
    if compiled.groups:
        return list(match.groups())
    return match[0]


def _flatten(values: Any) -> list[Any]:
    flat: list[Any] = []
    for item in values:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    raise HclError("no non-null, non-empty argument")


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "alltrue": lambda values: all(_boolean(v) for v in values),
    "coalesce": _coalesce,
    "concat": lambda *lists: [item for values in lists for item in values],
    "contains": lambda values, value: any(v == value for v in values),
    "endswith": lambda text, suffix: _string(text).endswith(_string(suffix)),
    "flatten": _flatten,
    "floor": lambda value: Fraction(_number(value).__floor__()),
    "join": lambda sep, values: _string(sep).join(_string(v) for v in values),
    "keys": lambda mapping: sorted(mapping),
    "length": lambda value: Fraction(len(value)),
    "regex": _regex,
    "tonumber": _tonumber,
    "tostring": _string,
    "trimsuffix": lambda text, suffix: _string(text).removesuffix(_string(suffix)),
}

_COMPARE: dict[str, Callable[[Fraction, Fraction], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_ARITHMETIC: dict[str, Callable[[Fraction, Fraction], Fraction]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


@dataclass
class Scope:
    """What names mean while evaluating: variables, locals, for-expression names."""

    variables: Mapping[str, Any]
    locals: Mapping[str, Tree] = field(default_factory=dict)
    names: Mapping[str, Any] = field(default_factory=dict)

    def bind(self, **names: Any) -> Scope:
        return Scope(self.variables, self.locals, {**self.names, **names})


def evaluate(node: Tree, scope: Scope) -> Any:
    """The value of an HCL expression tree, or HclError where Terraform fails."""
    kind = node.data
    parts = _trees(node)
    if kind == "expr_term":
        (inner,) = parts
        return evaluate(inner, scope)
    if kind in ("int_lit", "float_lit"):
        return Fraction(_token(node))
    if kind == "literal_value":
        return {"true": True, "false": False, "null": None}[_token(node)]
    if kind == "string":
        return _template(node, scope)
    if kind == "identifier":
        name = _token(node)
        if name not in scope.names:
            raise NotSupported(f"bare name {name}")
        return scope.names[name]
    if kind == "get_attr_expr_term":
        return _attribute(node, scope)
    if kind == "index_expr_term":
        target, index = parts
        (key_node,) = _trees(index)
        container, key = evaluate(target, scope), evaluate(key_node, scope)
        try:
            if isinstance(container, list):
                return container[int(_number(key))]
            return container[_string(key)]
        except (IndexError, KeyError, TypeError):
            raise HclError(f"no element {key!r} in {container!r}") from None
    if kind == "tuple":
        return [evaluate(part, scope) for part in parts]
    if kind == "object":
        return dict(_object_element(part, scope) for part in parts)
    if kind == "function_call":
        return _call(node, scope)
    if kind == "unary_op":
        operator = str(node.children[0])
        (operand,) = parts
        if operator == "!":
            return not _boolean(evaluate(operand, scope))
        return -_number(evaluate(operand, scope))
    if kind == "binary_op":
        return _binary(node, scope)
    if kind == "conditional":
        condition, when_true, when_false = parts
        chosen = when_true if _boolean(evaluate(condition, scope)) else when_false
        return evaluate(chosen, scope)
    if kind == "for_tuple_expr":
        return _for_tuple(node, scope)
    raise NotSupported(f"expression {kind}")


def _template(node: Tree, scope: Scope) -> str:
    text = []
    for part in node.children:
        if not isinstance(part, Tree):
            continue  # the quotes
        (piece,) = part.children
        if isinstance(piece, Token):
            text.append(_unescape(str(piece)))
        elif piece.data == "interpolation":
            (inner,) = _trees(piece)
            text.append(_render(evaluate(inner, scope)))
        else:
            raise NotSupported(f"template {piece.data}")
    return "".join(text)


def _attribute(node: Tree, scope: Scope) -> Any:
    target, attribute = _trees(node)
    (name_node,) = _trees(attribute)
    name = _token(name_node)
    root = _trees(target)[0] if target.data == "expr_term" else target
    if root.data == "identifier" and _token(root) == "var":
        if name not in scope.variables:
            raise NotSupported(f"var.{name} is not declared")
        return scope.variables[name]
    if root.data == "identifier" and _token(root) == "local":
        if name not in scope.locals:
            raise NotSupported(f"local.{name} is not declared")
        return evaluate(scope.locals[name], Scope(scope.variables, scope.locals))
    value = evaluate(target, scope)
    if not isinstance(value, Mapping) or name not in value:
        raise HclError(f"no attribute {name} in {value!r}")
    return value[name]


def _object_element(node: Tree, scope: Scope) -> tuple[str, Any]:
    key_node, value_node = _trees(node)
    (key_expr,) = _trees(key_node)
    inner = _trees(key_expr)[0] if key_expr.data == "expr_term" else key_expr
    key = (
        _token(inner)
        if inner.data == "identifier"
        else _string(evaluate(key_expr, scope))
    )
    return key, evaluate(value_node, scope)


def _call(node: Tree, scope: Scope) -> Any:
    name_node, *rest = _trees(node)
    name = _token(name_node)
    arguments = _trees(rest[0]) if rest else []
    if name == "can":
        (argument,) = arguments
        try:
            evaluate(argument, scope)
        except HclError:
            return False
        return True
    if name == "try":
        for argument in arguments:
            try:
                return evaluate(argument, scope)
            except HclError:
                continue
        raise HclError("no argument of try() could be evaluated")
    if name not in _FUNCTIONS:
        raise NotSupported(f"function {name}()")
    return _FUNCTIONS[name](*(evaluate(argument, scope) for argument in arguments))


def _binary(node: Tree, scope: Scope) -> Any:
    left_node, term = _trees(node)
    operator_node, right_node = _trees(term)
    operator = _token(operator_node)
    # Terraform before 1.12 evaluates both sides of && and ||: so does this.
    left, right = evaluate(left_node, scope), evaluate(right_node, scope)
    if operator == "&&":
        return _boolean(left) and _boolean(right)
    if operator == "||":
        return _boolean(left) or _boolean(right)
    if operator == "==":
        return left == right and isinstance(left, bool) == isinstance(right, bool)
    if operator == "!=":
        return not (left == right and isinstance(left, bool) == isinstance(right, bool))
    if operator in _COMPARE:
        return _COMPARE[operator](_number(left), _number(right))
    if operator in _ARITHMETIC:
        return _ARITHMETIC[operator](_number(left), _number(right))
    if operator == "/":
        if _number(right) == 0:
            raise HclError("division by zero")
        return _number(left) / _number(right)
    raise NotSupported(f"operator {operator}")


def _for_tuple(node: Tree, scope: Scope) -> list[Any]:
    intro, body, *condition = _trees(node)
    *names, collection = _trees(intro)
    if condition or len(names) != 1:
        raise NotSupported("for expressions with an index or an if clause")
    name = _token(names[0])
    return [
        evaluate(body, scope.bind(**{name: item}))
        for item in evaluate(collection, scope)
    ]


# --- Files: variables, validations, locals ------------------------------------


def _blocks(body: Tree) -> Iterator[tuple[str, list[str], Tree]]:
    """(type, labels, body) of each block directly in `body`."""
    for block in _trees(body):
        if block.data != "block":
            continue
        parts = _trees(block)
        labels = [
            _token(part) if part.data == "identifier" else _template(part, Scope({}))
            for part in parts[:-1]
        ]
        yield labels[0], labels[1:], parts[-1]


def _attributes(body: Tree) -> dict[str, Tree]:
    found = {}
    for attribute in _trees(body):
        if attribute.data == "attribute":
            name, expression = _trees(attribute)
            found[_token(name)] = expression
    return found


def parse(path: Path) -> Tree:
    """A .tf file as python-hcl2's syntax tree (its `body`)."""
    (body,) = _trees(hcl2.parses_to_tree(path.read_text()))
    return body


@dataclass(frozen=True)
class Validation:
    variable: str
    condition: Tree
    message: str


@dataclass(frozen=True)
class Variables:
    """infra/variables.tf: defaults and validations, ready to evaluate."""

    defaults: dict[str, Any]
    required: frozenset[str]
    validations: list[Validation]

    @classmethod
    def load(cls, path: Path) -> Variables:
        defaults, required, validations = {}, set(), []
        for kind, labels, body in _blocks(parse(path)):
            if kind != "variable":
                continue
            (name,) = labels
            attributes = _attributes(body)
            if "default" in attributes:
                defaults[name] = evaluate(attributes["default"], Scope({}))
            else:
                required.add(name)
            for inner, _, rule in _blocks(body):
                if inner == "validation":
                    rule_attributes = _attributes(rule)
                    validations.append(
                        Validation(
                            name,
                            rule_attributes["condition"],
                            evaluate(rule_attributes["error_message"], Scope({})),
                        )
                    )
        return cls(defaults, frozenset(required), validations)

    def values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(given) - set(self.defaults) - self.required
        if unknown:
            raise NotSupported(f"variables not declared: {sorted(unknown)}")
        missing = self.required - set(given)
        if missing:
            raise NotSupported(f"required variables not given: {sorted(missing)}")
        return {**self.defaults, **{k: value_of(v) for k, v in given.items()}}

    def refusals(self, **given: Any) -> list[str]:
        """The error messages `terraform plan -var ...` would print, in order.

        A condition that itself fails to evaluate is an error too, as in
        Terraform (it names the variable)."""
        scope = Scope(self.values(given))
        refused = []
        for rule in self.validations:
            try:
                holds = _boolean(evaluate(rule.condition, scope))
            except HclError as error:
                refused.append(f"{rule.variable}: invalid condition: {error}")
                continue
            if not holds:
                refused.append(rule.message)
        return refused


def local_value(main_tf: Path, variables: Variables, name: str, **given: Any) -> Any:
    """local.<name> of main.tf for these -var values."""
    found: dict[str, Tree] = {}
    for kind, _, body in _blocks(parse(main_tf)):
        if kind == "locals":
            found.update(_attributes(body))
    scope = Scope(variables.values(given), found)
    return evaluate(found[name], scope)


def resource_attribute(
    main_tf: Path, variables: Variables, address: str, path: str, **given: Any
) -> Any:
    """The value of `path` (block.attribute, e.g. condition.expression) inside
    resource `address` (type.name) of main.tf, for these -var values."""
    found: dict[str, Tree] = {}
    resources: dict[str, Tree] = {}
    for kind, labels, body in _blocks(parse(main_tf)):
        if kind == "locals":
            found.update(_attributes(body))
        elif kind == "resource":
            resources[".".join(labels)] = body
    *blocks, attribute = path.split(".")
    body = resources[address]
    for block in blocks:
        (body,) = [inner for kind, _, inner in _blocks(body) if kind == block]
    scope = Scope(variables.values(given), found)
    return evaluate(_attributes(body)[attribute], scope)


# --- IAM conditions (CEL): the subset IAM bindings here use ---------------------

_CEL_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>==|!=|&&|\|\||[!().,])'
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)


def _cel_tokens(expression: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(expression.rstrip()):
        match = _CEL_TOKEN.match(expression, position)
        if not match:
            raise NotSupported(f"CEL at {expression[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match[kind]))
        position = match.end()
    return tokens


_CEL_METHODS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
}


class _Cel:
    """Recursive descent over: ||, &&, !, ==, !=, ( ), string literals,
    resource.name, and the string methods startsWith and endsWith."""

    def __init__(self, expression: str, resource_name: str) -> None:
        self.tokens = _cel_tokens(expression)
        self.position = 0
        self.resource = {"name": resource_name}

    def peek(self) -> str | None:
        if self.position < len(self.tokens):
            return self.tokens[self.position][1]
        return None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise NotSupported("CEL ends early")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise NotSupported(f"CEL expected {expected!r}, got {token[1]!r}")
        self.position += 1
        return token

    def run(self) -> bool:
        value = self.disjunction()
        if self.peek() is not None:
            raise NotSupported(f"CEL left over at {self.peek()!r}")
        if not isinstance(value, bool):
            raise NotSupported("a CEL condition must be a bool")
        return value

    def disjunction(self) -> Any:
        value = self.conjunction()
        while self.peek() == "||":
            self.take()
            right = self.conjunction()
            value = bool(value) or bool(right)
        return value

    def conjunction(self) -> Any:
        value = self.negation()
        while self.peek() == "&&":
            self.take()
            right = self.negation()
            value = bool(value) and bool(right)
        return value

    def negation(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not self.negation()
        return self.comparison()

    def comparison(self) -> Any:
        value = self.member()
        if self.peek() in ("==", "!="):
            operator = self.take()[1]
            right = self.member()
            return (value == right) == (operator == "==")
        return value

    def member(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.disjunction()
            self.take(")")
        elif kind == "string":
            value = _unescape(text[1:-1])
        elif text == "resource":
            self.take(".")
            value = self.resource[self.take()[1]]
        else:
            raise NotSupported(f"CEL term {text!r}")
        while self.peek() == ".":
            self.take()
            method = self.take()[1]
            self.take("(")
            argument = self.disjunction()
            self.take(")")
            if method not in _CEL_METHODS or not isinstance(argument, str):
                raise NotSupported(f"CEL method {method}")
            value = _CEL_METHODS[method](value, argument)
        return value


def cel_allows(expression: str, resource_name: str) -> bool:
    """Whether an IAM condition grants access to the resource named so
    (`projects/_/buckets/B` for a bucket, `.../objects/O` for an object)."""
    return _Cel(expression, resource_name).run()
