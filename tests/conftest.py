pytest_plugins = [
    "tests.fixtures.backends",
    "tests.fixtures.esdb_backends",
    "tests.fixtures.fault_servers",
]
