"""How much one GraphQL request may ask for: nesting depth, aliases, and cost (the number of
fields it selects, fragments expanded). A query over a limit is refused before anything runs,
with a message naming the limit; the walk stops as soon as one is passed, so a fragment bomb
costs no more to refuse than a query at the limit costs to check.

Every root field of Shipyard's schema is one database query, so aliases are what turn one
request into hundreds of queries (200 aliases once took 14 s and slowed /health for everyone).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection
from typing import Any

import graphql
from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    TypeInfo,
)

MAX_DEPTH = 10  # the official client's deepest query is 4 (session info with containers)
MAX_ALIASES = 20
MAX_COST = 500  # fields selected, fragments expanded
MAX_NESTING = 32  # brackets of any kind: selections, arguments, list and object values
MAX_TOKENS = 10_000  # 200 aliased list queries are about 3000
TIME_LIMIT = 10.0  # seconds for executing one request (see Deadline)


# strings (block strings first) and comments, whose brackets do not count, or one bracket
_LEXEMES = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[{}()\[\]]')


class LimitExceeded(Exception):
    pass


class _Walk:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.aliases = 0
        self.cost = 0

    def selections(self, selection_set: SelectionSetNode | None, depth: int) -> None:
        if selection_set is None:
            return
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"the query is nested deeper than {MAX_DEPTH} levels")
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self.cost += 1
                if selection.alias is not None:
                    self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    raise LimitExceeded(f"the query uses more than {MAX_ALIASES} aliases")
                if self.cost > MAX_COST:
                    raise LimitExceeded(f"the query selects more than {MAX_COST} fields")
                self.selections(selection.selection_set, depth + 1)
            elif isinstance(selection, InlineFragmentNode):
                self.selections(selection.selection_set, depth)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:  # an unknown one is reported by the standard rules
                    self.cost += 1  # a cycle of spreads ends at MAX_COST
                    self.selections(fragment.selection_set, depth)


def check(document: DocumentNode) -> None:
    """LimitExceeded saying which limit the document passes."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walk = _Walk(fragments)
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            walk.selections(definition.selection_set, 1)


def parse(_context: Any, data: dict[str, Any]) -> DocumentNode:
    """ariadne's query parser, bounded: at most MAX_TOKENS tokens, and no deeper than
    MAX_NESTING brackets, checked before the recursive parser could run out of stack."""
    query = data["query"]
    if _nesting(query) > MAX_NESTING:
        raise GraphQLError(f"Query refused: the query is nested deeper than {MAX_NESTING} levels.")
    return graphql.parse(query, max_tokens=MAX_TOKENS)


def _nesting(text: str) -> int:
    """The deepest nesting of {, ( and [ outside strings and comments."""
    depth = deepest = 0
    for match in _LEXEMES.finditer(text):
        lexeme = match.group()
        if lexeme in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif lexeme in "})]":
            depth -= 1
    return deepest


def validate(
    schema: GraphQLSchema,
    document_ast: DocumentNode,
    rules: Collection[type[ASTValidationRule]] | None = None,
    max_errors: int | None = None,
    type_info: TypeInfo | None = None,
) -> list[GraphQLError]:
    """ariadne's query validator: the limits first, so that the standard rules (some of them
    quadratic in the fields selected) never see a query over them."""
    try:
        check(document_ast)
    except LimitExceeded as exc:
        return [GraphQLError(f"Query refused: {exc}.")]
    return graphql.validate(schema, document_ast, rules, max_errors=max_errors)


def deadline() -> Callable[..., Any]:
    """Execution middleware for one request: once it has run TIME_LIMIT seconds, no further
    resolver starts and each fails saying why. Resolvers are not cancelled midway: cancelling a
    database call in flight can leave its connection unusable, and each is one short query."""
    ends = time.monotonic() + TIME_LIMIT

    def middleware(
        next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo[Any], **args: Any
    ) -> Any:
        if time.monotonic() > ends:
            raise GraphQLError(f"Query refused: it ran longer than {TIME_LIMIT:g} seconds.")
        return next_(root, info, **args)

    return middleware
