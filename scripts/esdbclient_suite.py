"""Run the Streams/Gossip subset of esdbclient's own test suite against a fresh emulator.

    python scripts/esdbclient_suite.py CHECKOUT [--port 2113] [-k NAME]

CHECKOUT is a directory holding a copy of the esdbclient repository's `tests/` package (kept
outside this project, never committed). The suite's tests run unchanged; the emulator is
in-memory, listens on `localhost:PORT` and advertises `localhost` in gossip. On port 2113 the
suite's own `TestEventStoreDBClientWithInsecureConnection` class runs as it is; on another port
a subclass points it there (and the test that needs `localhost:2113` is left out).
Prints the pass/fail/skip counts; exits non-zero when a test fails.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import unittest
from pathlib import Path

# The subset that fits a Streams + Gossip (+ PersistentSubscriptions.List) server.
CLIENT_TESTS = [
    "test_context_manager",
    "test_close",
    "test_stream_read_raises_not_found",
    "test_stream_append_to_stream",
    "test_stream_append_event_with_current_version",
    "test_stream_append_event_with_stream_state_any",
    "test_stream_append_event_with_stream_state_stream_exists",
    "test_stream_append_events_with_current_version",
    "test_stream_append_events_with_stream_state_any",
    "test_stream_append_events_with_stream_state_stream_exists",
    "test_stream_append_events_raises_deadline_exceeded",
    "test_read_all_filter_default",
    "test_read_all_filter_include_event_types",
    "test_read_all_filter_exclude_event_types",
    "test_read_all_filter_include_stream_identifiers",
    "test_read_all_filter_exclude_stream_identifiers",
    "test_read_all_filter_include_ignores_filter_exclude",
    "test_read_all_raises_deadline_exceeded",
    "test_read_all_can_be_stopped",
    "test_get_commit_position",
    "test_stream_delete_with_current_version",
    "test_stream_delete_with_any_current_version",
    "test_stream_delete_expecting_stream_exists",
    "test_tombstone_stream_with_current_version",
    "test_tombstone_stream_with_any_current_version",
    "test_tombstone_stream_expecting_stream_exists",
    "test_subscribe_to_all_filter_exclude_system_events",
    "test_subscribe_to_all_filter_exclude_nothing",
    "test_subscribe_to_all_filter_include_event_types",
    "test_subscribe_to_all_filter_include_stream_names",
    "test_subscribe_to_all_include_checkpoints",
    "test_subscribe_to_all_include_caught_up",
    "test_extra_checkpoint_bug_is_fixed",
    "test_subscribe_to_all_from_commit_position_zero",
    "test_subscribe_to_all_from_commit_position_current",
    "test_subscribe_to_all_from_end",
    "test_subscribe_to_all_raises_deadline_exceeded",
    "test_subscribe_to_all_can_be_stopped",
    "test_subscribe_to_stream_from_start",
    "test_subscribe_to_stream_from_end",
    "test_subscribe_to_stream_from_stream_position",
    "test_subscribe_to_stream_can_be_stopped",
    "test_subscribe_to_stream_include_caught_up",
    "test_stream_metadata_get_and_set",
    "test_gossip_read",
]
SERVERLESS_CLASSES = [
    "TestConnectionSpec",
    "TestGrpcOptions",
    "TestHandleRpcError",
    "TestSubscriptionReadRequest",
    "TestRaisesDiscoveryFailed",
]


def build_suite(module: object, port: int, keyword: str | None) -> unittest.TestSuite:
    base = module.TestEventStoreDBClientWithInsecureConnection  # type: ignore[attr-defined]
    if port == 2113:
        client_class = base
    else:
        client_class = type("TestAgainstEmulator", (base,), {"ESDB_TARGET": f"localhost:{port}"})
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for name in CLIENT_TESTS:
        if keyword is None or keyword in name:
            suite.addTest(client_class(name))
    if keyword is None:
        classes = list(SERVERLESS_CLASSES)
        if port == 2113:
            classes.append("TestConnectsDespiteBadTarget")
        for class_name in classes:
            suite.addTests(loader.loadTestsFromTestCase(getattr(module, class_name)))
    return suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a directory holding esdbclient's tests/")
    parser.add_argument("--port", type=int, default=2113)
    parser.add_argument("-k", dest="keyword", default=None, help="only client tests naming this")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # This project's root first (run as a script, only scripts/ is on the path), then the
    # checkout, whose `tests` package must win over ours.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    embedded_server = importlib.import_module("esdb_emulator").EmbeddedServer
    sys.path.insert(0, str(args.checkout.resolve()))
    module = importlib.import_module("tests.test_client")
    server = embedded_server(host="localhost", port=args.port, advertised_host="localhost")
    with server:
        result = unittest.TextTestRunner(verbosity=1).run(
            build_suite(module, server.port, args.keyword)
        )
    passed = result.testsRun - len(result.failures) - len(result.errors) - len(result.skipped)
    sys.stdout.write(
        f"esdbclient subset: {result.testsRun} run, {passed} passed, "
        f"{len(result.failures) + len(result.errors)} failed, {len(result.skipped)} skipped\n"
    )
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
