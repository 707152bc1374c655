pytest_plugins = ["tests.fixtures.backends", "tests.fixtures.esdb_backends"]
