"""The `usersvc` console script: one entry point, a sub-command per process."""
