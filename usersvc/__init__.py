"""The usersvc contract: event types, their codec, settings and logging set-up.

Imported by the service, the worker and the command line alike; it does no I/O at import.
"""
