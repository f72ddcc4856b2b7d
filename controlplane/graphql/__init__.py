"""The GraphQL API (`POST /admin/gql`), schema-first with ariadne: schema.graphql is the SDL,
the resolvers call the same data functions as the REST handlers."""

from controlplane.graphql._common import Context
from controlplane.graphql._schema import SCHEMA_PATH, execute, schema

__all__ = ["SCHEMA_PATH", "Context", "execute", "schema"]
