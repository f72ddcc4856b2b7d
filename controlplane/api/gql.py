"""POST /admin/gql: Backend.AI's GraphQL endpoint. Always 200; failures are in `errors`
(docs/backendai-api.md §5.3, §7)."""

from __future__ import annotations

from quart import Blueprint

from controlplane import graphql
from controlplane.api._context import core, requester
from controlplane.api._models import GraphQLRequest, GraphQLResponse
from controlplane.api._typed import body, returns

bp = Blueprint("gql", __name__)
ENDPOINT = "gql.gql"  # the audit hook (api/app.py) records the mutations sent here


@bp.post("/admin/gql")
@returns(GraphQLResponse)
@body(GraphQLRequest)
async def gql(data: GraphQLRequest) -> GraphQLResponse:
    """Run one GraphQL query or mutation (limited in depth, aliases, cost and time)."""
    result = await graphql.execute(
        core(), requester(), data.query, data.variables, data.operation_name
    )
    return GraphQLResponse.model_validate(result)
