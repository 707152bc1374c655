"""Code named on the command line: `module:name` or `path/to/file.py:name`.

`usersvc bisect --check` names a function and `--projection` (bisect and replay) a projection
class. A dotted module is imported as Python imports it, with the current directory searched
first (as `python -m` does), so a file next to where the command runs is found; a path ending in
`.py` is loaded from that file. What cannot be loaded is refused with `LoadError` saying why.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from worker.projection import Projection

# The name of a module loaded from a file starts with this.
_FROM_FILE = "_usersvc_loaded_"


class LoadError(ValueError):
    """The named code cannot be loaded, or is not what was asked for."""


def load_object(spec: str) -> Any:
    """The object `spec` (`module:name`, `file.py:name`, with dots in `name` for attributes)."""
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise LoadError(f"{spec!r} is not module:name (or path/to/file.py:name)")
    module = _module(module_name)
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise LoadError(f"{module_name} has no {attribute!r}") from None
    return value


def load_projection(spec: str) -> type[Projection]:
    """A projection class: `worker.projection.Projection` or a subclass of it. The pipeline
    calls its `apply`, `advance` and `checkpoint`; it is built as `cls(schema, checkpoint_name)`
    and must keep its state in the database (a bisect rolls the database back, not Python)."""
    value = load_object(spec)
    if not isinstance(value, type) or not issubclass(value, Projection):
        raise LoadError(f"{spec} is not a subclass of worker.projection.Projection")
    return value


def qualified_name(value: Any) -> str:
    """`module:name` of a class or function, as it would be named on the command line (the
    file's path for code loaded from a file)."""
    module = sys.modules.get(value.__module__)
    where = value.__module__
    if where.startswith(_FROM_FILE) and module is not None and module.__file__:
        where = module.__file__
    return f"{where}:{value.__qualname__}"


def _module(name: str) -> Any:
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise LoadError(f"{name} is not a file")
        module_name = _FROM_FILE + path.stem
        loaded = sys.modules.get(module_name)
        if loaded is not None and getattr(loaded, "__file__", None) == str(path.resolve()):
            return loaded
        spec = importlib.util.spec_from_file_location(module_name, path.resolve())
        if spec is None or spec.loader is None:
            raise LoadError(f"{name} cannot be loaded as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise LoadError(f"loading {name} failed: {type(exc).__name__}: {exc}") from None
        return module
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise LoadError(f"cannot import {name}: {exc}") from None
    except Exception as exc:
        raise LoadError(f"importing {name} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(cwd)
