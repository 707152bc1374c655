"""Which packages the distribution holds; everything else is declared in pyproject.toml.

pyproject.toml can either discover packages or list them, not both: the SQL migrations keep their
top-level `migrations/` folder and ship as the package `usersvc.migrations`, beside the packages
found here.
"""

from setuptools import find_packages, setup

TOP_LEVEL = ["usersvc", "usersvc_cli", "service", "worker", "repro", "esdb_emulator"]

setup(
    packages=[
        *find_packages(include=[pattern for name in TOP_LEVEL for pattern in (name, f"{name}.*")]),
        "usersvc.migrations",
    ],
    package_dir={"usersvc.migrations": "migrations"},
    package_data={"usersvc.migrations": ["*.sql"]},
)
