"""The read model's forward-only SQL migrations, `NNNN_<what>.sql`.

This folder ships inside the distribution as the package `usersvc.migrations` (see setup.py), so
an installed `usersvc migrate` finds the SQL wherever it runs; worker.migrator loads the files.
"""
