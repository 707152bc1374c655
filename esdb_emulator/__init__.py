"""An EventStoreDB emulator: a gRPC server that official EventStoreDB clients work against
unchanged (esdbclient, and clients that ask ServerFeatures first, such as the Node client).

For development, tests and bug reproduction where no EventStoreDB can run. It imports nothing of
any application. `model` holds the data model (records, store, decisions, write-ahead log,
scavenging, salvage; no gRPC), `rpc` the gRPC layer (servicers, wire conversion, the real server's
statuses), `server` the server and `EmbeddedServer`, `cli` the `python -m esdb_emulator` command
and its `scavenge` and `salvage` commands.
"""

from esdb_emulator.model import ImportedEvent, Store
from esdb_emulator.server import EmbeddedServer

__all__ = ["EmbeddedServer", "ImportedEvent", "Store"]
