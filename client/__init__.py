"""Shipyard's Python SDK (client.sdk) and the `shipyard run/session/admin/image` commands.

    from client.config import ClientConfig
    from client.sdk import Client

    async with Client(ClientConfig.from_env()) as api:
        session = await api.create_session("python")

Nothing is imported here: `shipyard run` (client/fastrun.py) must not pay for the SDK.
"""
