"""The collaborators of the running app, as `create_app` stored them, and the ports they fill."""

from __future__ import annotations

from typing import Protocol

from flask import current_app

from service.commands import StorePort, UserCommands
from service.users import Checkpoint, User


class EventStorePort(StorePort, Protocol):
    def head_position(self) -> int: ...
    def all_position(self) -> int: ...


class UsersPort(Protocol):
    def get(self, username: str) -> User | None: ...
    def checkpoint(self, name: str) -> Checkpoint | None: ...
    def parked_streams(self, name: str) -> int: ...


EVENT_STORE = "usersvc.event_store"
USERS = "usersvc.users"
COMMANDS = "usersvc.commands"


def event_store() -> EventStorePort:
    store: EventStorePort = current_app.extensions[EVENT_STORE]
    return store


def users() -> UsersPort:
    repo: UsersPort = current_app.extensions[USERS]
    return repo


def commands() -> UserCommands:
    handler: UserCommands = current_app.extensions[COMMANDS]
    return handler
