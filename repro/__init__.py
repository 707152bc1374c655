"""Offline bug reproduction: replay, export, snapshot and the bundle format.

Built on the live worker's pipeline and projection (`worker.pipeline`, `worker.projection`), so a
replay applies history exactly as the worker does.
"""
