"""User keymap: binding ids mapped to keys, read from a TOML file.

The file contains `binding-id = "keys"` lines, at the top level or under a
`[keymap]` table, e.g. `"project.undo" = "u,ctrl+z,backspace"`. Binding ids
are listed in the F1 help of each screen.
"""

from __future__ import annotations

import os
from pathlib import Path

KEYMAP_ENV = "SVD_WORKBENCH_KEYMAP"


class KeymapError(ValueError):
    """The keymap file cannot be read or has a value that is not a key string."""


def default_keymap_path() -> Path:
    """Return $SVD_WORKBENCH_KEYMAP, else `$XDG_CONFIG_HOME/svd-workbench/keymap.toml` (~/.config/...)."""
    explicit = os.environ.get(KEYMAP_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config_home) if config_home and os.path.isabs(config_home) else Path.home() / ".config"
    return base / "svd-workbench" / "keymap.toml"


def parse_keymap(text: str, source: str = "keymap") -> dict[str, str]:
    """Parse keymap TOML text.

    Raises:
        KeymapError: naming `source` and the offending entry.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = None
    if tomllib is None:
        data = parse_simple_toml(text, source)
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise KeymapError(f"Invalid keymap file {source}: {error}") from None
    table = data.get("keymap", data)
    if not isinstance(table, dict):
        raise KeymapError(f"Invalid keymap file {source}: 'keymap' must be a table of binding-id = \"keys\".")
    keymap = {}
    for binding_id, keys in table.items():
        if not isinstance(keys, str) or not keys.strip():
            raise KeymapError(
                f"Invalid keymap file {source}: expected a key string such as \"u,ctrl+z\" for "
                f"'{binding_id}'. Received: {keys!r}"
            )
        keymap[str(binding_id)] = keys.strip()
    return keymap


def parse_simple_toml(text: str, source: str) -> dict:
    """Read `key = "value"` lines and `[table]` headers, for Pythons without tomllib."""
    data: dict = {}
    table = data
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            table = data.setdefault(line[1:-1].strip(), {})
            continue
        key, separator, value = line.partition("=")
        value = value.strip()
        if not separator or len(value) < 2 or value[0] != value[-1] or value[0] not in "\"'":
            raise KeymapError(f"Invalid keymap file {source}, line {number}: expected binding-id = \"keys\".")
        table[key.strip().strip("\"'")] = value[1:-1]
    return data


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """Read the keymap file; an absent file gives an empty keymap.

    Raises:
        KeymapError: if the file exists but cannot be read or parsed.
    """
    path = path or default_keymap_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise KeymapError(f"Cannot read the keymap file {path}: {error}") from None
    return parse_keymap(text, str(path))
