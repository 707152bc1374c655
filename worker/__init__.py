"""The read-model side: migrations, the projection, the live projector process and replay."""
