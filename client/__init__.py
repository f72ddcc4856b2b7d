"""Shipyard's Python SDK and the `shipyard run/session/admin/image` commands.

async with Client(ClientConfig.from_env()) as api:
    session = await api.create_session("python")
"""

from client.config import ClientConfig
from client.errors import APIError, ClientError, ConfigError
from client.sdk import Client

__all__ = ["APIError", "Client", "ClientConfig", "ClientError", "ConfigError"]
