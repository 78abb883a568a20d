"""Settings (vfsd.config): defaults < TOML file < ``VFSD_*`` environment < flags.

``conf/vfsd.toml`` documents every setting with its default; the tests here
keep that file, ``SETTINGS`` and the ``Config`` dataclass saying the same thing.
The ``[collectors]`` table is carried through as written and validated by
``vfsd.collectors``, so it is outside ``SETTINGS`` and outside these checks.
Every call passes ``env=`` so the test's own environment never leaks in.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

import pytest

from vfsd.config import BY_NAME, BY_REDIS_NAME, SETTINGS, Config, ConfigError, load, parse_size
from vfsd.paths import DEFAULT_ROOTS, PLANES

CONF_FILE = Path(__file__).resolve().parent.parent / "conf" / "vfsd.toml"


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "vfsd.toml"
    path.write_text(text)
    return str(path)


# --- defaults and the documented file -------------------------------------------


def test_no_file_gives_the_defaults() -> None:
    assert load(env={}) == Config()
    assert load(None, env={}, overrides={}).source == "defaults"


def test_settings_table_and_config_dataclass_agree() -> None:
    fields = {f.name for f in dataclasses.fields(Config)} - {"roots", "collectors", "source"}
    assert fields == {s.name for s in SETTINGS}
    defaults = Config()
    for setting in SETTINGS:
        assert getattr(defaults, setting.name) == setting.default, setting.name
        assert isinstance(setting.default, setting.type), setting.name
    assert len(BY_NAME) == len(BY_REDIS_NAME) == len(SETTINGS)  # names are unique
    assert dict(defaults.roots) == dict(DEFAULT_ROOTS)


def test_the_documented_file_parses_to_exactly_the_defaults() -> None:
    config = load(str(CONF_FILE), env={})
    assert config.source == str(CONF_FILE)
    assert dataclasses.replace(config, source="defaults", collectors={}) == Config()


def test_every_setting_is_documented_in_its_section_with_its_default() -> None:
    doc = tomllib.loads(CONF_FILE.read_text())
    for setting in SETTINGS:
        assert setting.section in doc, f"[{setting.section}] missing from {CONF_FILE}"
        assert setting.name in doc[setting.section], f"[{setting.section}] {setting.name} missing from {CONF_FILE}"
        value = doc[setting.section][setting.name]
        assert value == setting.default and type(value) is setting.type, (
            f"[{setting.section}] {setting.name} = {value!r} in {CONF_FILE}, default is {setting.default!r}"
        )
    documented = {(section, key) for section, table in doc.items() if section not in ("roots", "collectors")
                  for key in table}
    assert documented == {(s.section, s.name) for s in SETTINGS}, "the file documents a setting that does not exist"
    assert doc["roots"] == dict(DEFAULT_ROOTS)


def test_every_live_setting_is_marked_live_in_the_file() -> None:
    text = CONF_FILE.read_text()
    for setting in SETTINGS:
        if setting.live:
            assert setting.redis_name in text, f"{setting.name}: its CONFIG SET name {setting.redis_name} is not documented"


# --- precedence -----------------------------------------------------------------


def test_precedence_defaults_file_env_overrides(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[node]\nport = 7000\nbind = \"0.0.0.0\"\n[limits]\nmaxclients = 50\n")
    from_file = load(path, env={})
    assert (from_file.port, from_file.bind, from_file.maxclients) == (7000, "0.0.0.0", 50)
    assert from_file.log_level == "info"  # untouched settings keep their defaults

    from_env = load(path, env={"VFSD_PORT": "7001", "VFSD_LOG_LEVEL": "debug"})
    assert (from_env.port, from_env.bind, from_env.log_level) == (7001, "0.0.0.0", "debug")

    from_flags = load(path, env={"VFSD_PORT": "7001"}, overrides={"port": 7002, "bind": None})
    assert from_flags.port == 7002
    assert from_flags.bind == "0.0.0.0"  # a flag left unset (None) does not override


def test_env_alone_overrides_defaults() -> None:
    config = load(env={"VFSD_NODE_ID": "n7", "VFSD_PROTECTED_MODE": "no", "VFSD_MAX_BULK_BYTES": "1mb",
                       "UNRELATED": "x", "VFSD_UNKNOWN_THING": "1"})
    assert config.node_id == "n7"
    assert config.protected_mode is False
    assert config.max_bulk_bytes == 1 << 20


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VFSD_PORT", "6390")
    assert load().port == 6390


@pytest.mark.parametrize(("raw", "expected"), [("yes", True), ("no", False), ("TRUE", True), ("0", False),
                                               ("on", True), ("off", False)])
def test_boolean_spellings(raw: str, expected: bool) -> None:
    assert load(env={"VFSD_PROTECTED_MODE": raw}).protected_mode is expected


def test_roots_table_replaces_the_defaults(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[roots]\n"/app" = "consensus"\n"/hw" = "eventual"\n')
    assert load(path, env={}).roots == {"/app": "consensus", "/hw": "eventual"}


def test_collectors_section_is_validated_at_load(tmp_path: Path) -> None:
    good = write_toml(tmp_path, "[collectors]\nenabled = false\n[collectors.status]\ninterval_s = 2\n")
    assert load(good, env={}).collectors == {"enabled": False, "status": {"interval_s": 2}}
    bad = write_toml(tmp_path, "[collectors]\nanything = 1\n")
    with pytest.raises(ConfigError, match="anything"):
        load(bad, env={})


# --- bad values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VFSD_PORT": "abc"}, "port: expected an integer, got 'abc'"),
        ({"VFSD_PORT": "-1"}, "port: must be between 0 and 65535 inclusive, got '-1'"),
        ({"VFSD_PORT": "70000"}, "port: must be between 0 and 65535 inclusive, got '70000'"),
        ({"VFSD_MAX_BULK_BYTES": "3"}, "max_bulk_bytes: must be between 1048576 and 9223372036854775807 inclusive, got '3'"),
        ({"VFSD_MAXCLIENTS": "0"}, "maxclients: must be between 1 and 4294967295 inclusive, got '0'"),
        ({"VFSD_MAX_ARRAY_LEN": "1"}, "max_array_len: must be between 1024 and 2147483647 inclusive, got '1'"),
        ({"VFSD_LOG_LEVEL": "verbose"}, "log_level: must be one of debug, info, warning, error, got 'verbose'"),
        ({"VFSD_NOTIFY_VFS_EVENTS": "Q"}, "notify_vfs_events: Invalid event class character 'Q' for notify-keyspace-events"),
        ({"VFSD_NODE_ID": "a/b"}, "node_id: 'a/b' is not a valid node id: it must be one path segment (no '/', not '.' or '..', not empty)"),
        ({"VFSD_NODE_ID": ".."}, "node_id: '..' is not a valid node id: it must be one path segment (no '/', not '.' or '..', not empty)"),
        ({"VFSD_PORT": "1.5"}, "port: expected an integer, got '1.5'"),
        ({"VFSD_PROTECTED_MODE": "maybe"}, "protected_mode: expected yes/no, got 'maybe'"),
    ],
)
def test_bad_environment_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env=env)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[node]\nport = "abc"\n', "port: expected an integer, got 'abc'"),
        ("[node]\nport = true\n", "port: expected an integer, got True"),
        ("[node]\nbind = 5\n", "bind: expected a string, got 5"),
        ("[node]\nnonsense = 1\n", "unknown setting [node] nonsense"),
        ("[node]\nmaxclients = 5\n", "unknown setting [node] maxclients"),  # lives in [limits]
        ("[bogus]\nport = 1\n", "unknown setting [bogus] port"),
        ("port = 6379\n", "top-level key 'port' must be a [section]"),
        ('[roots]\n"/app" = "durable"\n', "[roots] /app = 'durable': plane must be one of " + ", ".join(PLANES)),
        ('[roots]\n"app" = "consensus"\n', "a root is one path segment such as '/app'"),
        ('[roots]\n"/a/b" = "consensus"\n', "a root is one path segment such as '/app'"),
        ('[roots]\n"/" = "consensus"\n', "a root is one path segment such as '/app'"),
        ("roots = 1\n", "[roots] must be a table of root = plane"),
        ("[node\n", "config file"),
    ],
)
def test_bad_file_values(tmp_path: Path, toml: str, message: str) -> None:
    path = write_toml(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load(path, env={})
    assert message in str(info.value)


def test_float_for_an_integer_setting_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[node]\nport = 1.5\n")
    with pytest.raises(ConfigError, match="port: expected an integer"):
        load(path, env={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"cannot read config file {missing}"):
        load(str(missing), env={})


def test_bad_override_value() -> None:
    with pytest.raises(ConfigError, match="maxclients: expected an integer, got 'lots'"):
        load(env={}, overrides={"maxclients": "lots"})


# --- parse_size ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1024", 1024),
        ("1b", 1),
        ("64kb", 64 * 1024),
        ("64KB", 64 * 1024),
        ("512mb", 512 * 1024 * 1024),
        ("1gb", 1 << 30),
        ("1k", 1000),
        ("2m", 2_000_000),
        ("3g", 3_000_000_000),
        (" 16mb ", 16 << 20),
    ],
)
def test_parse_size_follows_redis_memory_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "kb", "1.5mb", "1 tb", "mb1"])
def test_parse_size_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_sizes_are_accepted_for_integer_settings(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[limits]\nmax_bulk_bytes = "256mb"\n')
    assert load(path, env={}).max_bulk_bytes == 256 << 20


# --- derived settings ----------------------------------------------------------


def test_resolved_derives_peer_port_and_data_dir() -> None:
    config = Config(node_id="n1", port=7000).resolved()
    assert config.peer_port == 17000
    assert config.data_dir == os.path.join("vfsd-data", "n1")
    assert config.node_id == "n1"


def test_resolved_keeps_explicit_values() -> None:
    config = Config(node_id="n1", port=7000, peer_port=9999, data_dir="/var/lib/vfsd").resolved()
    assert (config.peer_port, config.data_dir) == (9999, "/var/lib/vfsd")


def test_resolved_names_the_node_after_the_host() -> None:
    config = Config().resolved()
    assert config.node_id
    assert config.peer_port == 16379
    assert config.data_dir == os.path.join("vfsd-data", config.node_id)


def test_resolved_follows_a_changed_port() -> None:
    assert load(env={"VFSD_PORT": "6400", "VFSD_NODE_ID": "x"}).resolved().peer_port == 16400
