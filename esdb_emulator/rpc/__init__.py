"""The emulator's gRPC layer: the services clients call (Streams, Gossip, the List call of
PersistentSubscriptions, Operations' scavenge calls, ServerFeatures), protobuf ⇄ model conversion
(`wire`), and the real server's status codes and texts (`statuses`). It turns requests into
calls on the model (`esdb_emulator.model`); the model knows nothing of gRPC."""
