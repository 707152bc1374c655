"""An EventStoreDB emulator: a gRPC server that the official `esdbclient` works against unchanged.

For development, tests and bug reproduction where no EventStoreDB can run. `store` holds the data
model (no gRPC), `streams`, `subscriptions` and `cluster` the servicers, `server` the server.
"""

from esdb_emulator.server import EmbeddedServer

__all__ = ["EmbeddedServer"]
