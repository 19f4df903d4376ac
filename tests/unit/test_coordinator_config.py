"""coordinator.config (the coordinator's TOML) and coordinator.client.load_profile (the analyst's
profile): valid files load into frozen dataclasses with paths relative to the file; every mistake
is a ConfigError naming the file, the key and the fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from accord.coordinator.client import Profile, load_profile
from accord.coordinator.config import (
    CoordinatorConfig,
    NodeEndpoint,
    load_coordinator_config,
    write_coordinator_config,
)
from accord.errors import ConfigError
from accord.rpc.transport import TlsFiles

VALID = """
[coordinator]
name = "coordinator"
listen = "127.0.0.1:50050"
deadline_seconds = 5
max_workers = 4

[tls]
cert = "certs/coordinators/coordinator.pem"
key = "certs/coordinators/coordinator.key"
ca = "{ca}"

[access]
analysts = ["alice", "bob-2"]

[nodes.district-a]
address = "127.0.0.1:50052"

[nodes.county]
address = "county.example.org:50051"

[nodes.district-b]
address = "[::1]:50053"
"""


def _tls_files(root: Path) -> Path:
    """Create the certificate files the config points at (the loader checks they exist; whether
    they are valid certificates is `accord coordinator check`'s job); return the absolute CA."""
    for rel in ("certs/coordinators/coordinator.pem", "certs/coordinators/coordinator.key"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("-----BEGIN PLACEHOLDER-----\n")
    ca = root / "elsewhere" / "ca.pem"
    ca.parent.mkdir(exist_ok=True)
    ca.write_text("-----BEGIN PLACEHOLDER-----\n")
    return ca


def valid_text(root: Path) -> str:
    return VALID.replace("{ca}", str(_tls_files(root)))


def write(root: Path, text: str, name: str = "coordinator.toml") -> Path:
    path = root / "conf" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    """A folder holding the config (in conf/) and its certificate files (relative to conf/)."""
    (tmp_path / "conf").mkdir()
    return tmp_path / "conf"


def test_valid_config_loads_into_a_frozen_dataclass(conf_dir: Path) -> None:
    """Property: a valid file becomes a CoordinatorConfig with typed values, relative TLS paths
    resolved against the config's folder (not the working directory), absolute ones kept, nodes
    in a stable (sorted) order, and defaults for the optional keys; the result is immutable."""
    path = write(conf_dir.parent, valid_text(conf_dir))
    cfg = load_coordinator_config(path)
    assert isinstance(cfg, CoordinatorConfig)
    assert (cfg.name, cfg.listen, cfg.deadline_seconds, cfg.max_workers, cfg.max_in_flight) == (
        "coordinator",
        "127.0.0.1:50050",
        5.0,
        4,
        32,
    )
    assert isinstance(cfg.deadline_seconds, float)
    assert cfg.tls == TlsFiles(
        conf_dir / "certs/coordinators/coordinator.pem",
        conf_dir / "certs/coordinators/coordinator.key",
        conf_dir / "elsewhere/ca.pem",
    )
    assert cfg.analysts == ("alice", "bob-2")
    assert cfg.nodes == (
        NodeEndpoint("county", "county.example.org:50051"),
        NodeEndpoint("district-a", "127.0.0.1:50052"),
        NodeEndpoint("district-b", "[::1]:50053"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]


def test_relative_paths_do_not_depend_on_the_working_directory(
    conf_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Property: loading the same file from another working directory gives the same paths."""
    path = write(conf_dir.parent, valid_text(conf_dir))
    first = load_coordinator_config(path)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_coordinator_config(path) == first


def test_minimal_config_takes_the_defaults(conf_dir: Path) -> None:
    """Property: only the required keys are needed; deadline, workers and in-flight limits default."""
    text = valid_text(conf_dir)
    text = text.replace("deadline_seconds = 5\n", "").replace("max_workers = 4\n", "")
    text = text.replace('listen = "127.0.0.1:50050"', 'listen = "127.0.0.1:0"')  # port 0: pick one
    cfg = load_coordinator_config(write(conf_dir.parent, text))
    assert (cfg.deadline_seconds, cfg.max_workers, cfg.max_in_flight) == (10.0, 16, 32)
    assert cfg.listen == "127.0.0.1:0"
    assert cfg.report_node_timings is False  # node timings reach analysts only when asked for


def test_report_node_timings_is_an_explicit_boolean(conf_dir: Path) -> None:
    """Property: report_node_timings turns on only with `true`, and a non-boolean is refused."""
    text = valid_text(conf_dir).replace("max_workers = 4\n", "max_workers = 4\nreport_node_timings = true\n")
    assert load_coordinator_config(write(conf_dir.parent, text)).report_node_timings is True
    bad = text.replace("report_node_timings = true", 'report_node_timings = "yes"')
    with pytest.raises(ConfigError) as info:
        load_coordinator_config(write(conf_dir.parent, bad))
    assert "coordinator.report_node_timings" in info.value.message and "bool" in info.value.message


# ---- every mistake: (what to change in the valid text, key named, words of the fix) ---------


def _swap(old: str, new: str) -> tuple[str, str]:
    return old, new


BAD: list[tuple[str, tuple[str, str], str, str]] = [
    # (id, (old, new) in VALID, key the message names, words of the fix)
    (
        "unknown-top-key",
        _swap("[nodes.county]", "[node]\nx = 1\n[nodes.county]"),
        "node",
        "did you mean 'nodes'",
    ),
    (
        "unknown-coordinator-key",
        _swap("deadline_seconds = 5", "deadline_second = 5"),
        "coordinator.deadline_second",
        "did you mean 'deadline_seconds'",
    ),
    ("unknown-tls-key", _swap('key = "certs', 'kee = "certs'), "tls.kee", "did you mean 'key'"),
    (
        "unknown-node-key",
        _swap('address = "127.0.0.1:50052"', 'adress = "127.0.0.1:50052"'),
        "nodes.district-a.adress",
        "did you mean 'address'",
    ),
    ("unknown-access-key", _swap("analysts = [", "analyst = ["), "access.analyst", "did you mean 'analysts'"),
    (
        "no-coordinator-section",
        _swap("[coordinator]", "[coordinatr]"),
        "coordinatr",
        "did you mean 'coordinator'",
    ),
    ("coordinator-not-a-table", _swap("[coordinator]\n", 'coordinator = "x"\n[ignored]\n'), "", ""),
    (
        "missing-name",
        _swap('name = "coordinator"\n', ""),
        "coordinator.name",
        "add `name = ...` under [coordinator]",
    ),
    (
        "name-not-a-string",
        _swap('name = "coordinator"', "name = 7"),
        "coordinator.name",
        "must be a string, not an integer",
    ),
    (
        "bad-name",
        _swap('name = "coordinator"', 'name = "Coordinator_1"'),
        "coordinator.name",
        "lower-case letters",
    ),
    ("missing-listen", _swap('listen = "127.0.0.1:50050"\n', ""), "coordinator.listen", "add `listen = ...`"),
    (
        "listen-no-port",
        _swap('listen = "127.0.0.1:50050"', 'listen = "127.0.0.1"'),
        "coordinator.listen",
        "host:port",
    ),
    (
        "listen-port-too-big",
        _swap('listen = "127.0.0.1:50050"', 'listen = "127.0.0.1:99999"'),
        "coordinator.listen",
        "from 0 to 65535",
    ),
    (
        "listen-url",
        _swap('listen = "127.0.0.1:50050"', 'listen = "http://127.0.0.1:50050"'),
        "coordinator.listen",
        "127.0.0.1:50050",
    ),
    (
        "negative-deadline",
        _swap("deadline_seconds = 5", "deadline_seconds = -1"),
        "coordinator.deadline_seconds",
        "between 0 and 3600",
    ),
    (
        "zero-deadline",
        _swap("deadline_seconds = 5", "deadline_seconds = 0"),
        "coordinator.deadline_seconds",
        "between 0 and 3600",
    ),
    (
        "huge-deadline",
        _swap("deadline_seconds = 5", "deadline_seconds = 86400"),
        "coordinator.deadline_seconds",
        "between 0 and 3600",
    ),
    (
        "nan-deadline",
        _swap("deadline_seconds = 5", "deadline_seconds = nan"),
        "coordinator.deadline_seconds",
        "between 0 and 3600",
    ),
    (
        "inf-deadline",
        _swap("deadline_seconds = 5", "deadline_seconds = inf"),
        "coordinator.deadline_seconds",
        "between 0 and 3600",
    ),
    (
        "string-deadline",
        _swap("deadline_seconds = 5", 'deadline_seconds = "5"'),
        "coordinator.deadline_seconds",
        "must be a number",
    ),
    (
        "bool-deadline",
        _swap("deadline_seconds = 5", "deadline_seconds = true"),
        "coordinator.deadline_seconds",
        "must be a number",
    ),
    ("zero-workers", _swap("max_workers = 4", "max_workers = 0"), "coordinator.max_workers", "between 1 and"),
    (
        "float-workers",
        _swap("max_workers = 4", "max_workers = 4.5"),
        "coordinator.max_workers",
        "must be an integer",
    ),
    (
        "zero-in-flight",
        _swap("max_workers = 4", "max_in_flight = 0"),
        "coordinator.max_in_flight",
        "between 1 and",
    ),
    ("misspelt-tls-section", _swap("[tls]", "[tsl]"), "tsl", "did you mean 'tls'"),
    (
        "missing-tls-key",
        _swap('key = "certs/coordinators/coordinator.key"\n', ""),
        "tls.key",
        "add `key = ...` under [tls]",
    ),
    ("missing-cert-file", _swap("coordinator.pem", "nobody.pem"), "tls.cert", "accord pki init"),
    ("missing-key-file", _swap("coordinator.key", "nobody.key"), "tls.key", "accord pki init"),
    ("cert-is-a-directory", _swap("certs/coordinators/coordinator.pem", "certs"), "tls.cert", "no such file"),
    (
        "empty-cert-path",
        _swap('cert = "certs/coordinators/coordinator.pem"', 'cert = ""'),
        "tls.cert",
        "give a file path",
    ),
    (
        "no-analysts",
        _swap('analysts = ["alice", "bob-2"]', "analysts = []"),
        "access.analysts",
        'e.g. ["alice"]',
    ),
    (
        "no-access-section",
        _swap('[access]\nanalysts = ["alice", "bob-2"]\n', ""),
        "access.analysts",
        "add `analysts = ...` under [access]",
    ),
    (
        "bad-analyst",
        _swap('analysts = ["alice", "bob-2"]', 'analysts = ["Alice"]'),
        "access.analysts",
        "certificate names",
    ),
    (
        "analysts-not-a-list",
        _swap('analysts = ["alice", "bob-2"]', 'analysts = "alice"'),
        "access.analysts",
        "must be a list",
    ),
    (
        "duplicate-analyst",
        _swap('analysts = ["alice", "bob-2"]', 'analysts = ["alice", "alice"]'),
        "access.analysts",
        "remove the duplicate",
    ),
    (
        "unknown-section",
        _swap("[nodes.district-a]", "[peers.district-a]"),
        "peers",
        "allowed keys: access, coordinator",
    ),
    (
        "misspelt-section",
        _swap("[nodes.district-a]", "[nodes-x.district-a]"),
        "nodes-x",
        "did you mean 'nodes'",
    ),
    ("bad-node-name", _swap("[nodes.county]", "[nodes.County_1]"), "nodes.County_1", "lower-case letters"),
    (
        "missing-address",
        _swap('address = "county.example.org:50051"\n', ""),
        "nodes.county.address",
        "add `address = ...`",
    ),
    (
        "bad-address",
        _swap("county.example.org:50051", "county.example.org"),
        "nodes.county.address",
        "host:port",
    ),
    (
        "address-port-zero",
        _swap("county.example.org:50051", "county.example.org:0"),
        "nodes.county.address",
        "from 1 to 65535",
    ),
    (
        "address-port-too-big",
        _swap("county.example.org:50051", "county.example.org:65536"),
        "nodes.county.address",
        "from 1 to 65535",
    ),
    (
        "address-with-scheme",
        _swap("county.example.org:50051", "grpc://county:1"),
        "nodes.county.address",
        "host:port",
    ),
    (
        "address-not-a-string",
        _swap('"county.example.org:50051"', "50051"),
        "nodes.county.address",
        "must be a str",
    ),
    ("node-not-a-table", _swap('[nodes.county]\naddress = "county.example.org:50051"\n', ""), "", ""),
    (
        "duplicate-address",
        _swap("[::1]:50053", "127.0.0.1:50052"),
        "nodes.district-b.address",
        "also the address of nodes.district-a",
    ),
]
# "node-not-a-table" and "coordinator-not-a-table" need whole-file edits: see _bad_text.


def _bad_text(case: str, text: str, old: str, new: str) -> str:
    if case == "node-not-a-table":
        return text.replace("[nodes.district-a]\n", "[nodes]\ncounty = 5\n[nodes.district-a]\n").replace(
            old, new
        )
    if case == "coordinator-not-a-table":
        start = text.index("[coordinator]")
        end = text.index("[tls]")
        return 'coordinator = "x"\n' + text[:start] + text[end:]
    assert old in text, f"{case}: {old!r} not in the valid text"
    return text.replace(old, new, 1)


EXPECTED_SPECIAL = {
    "node-not-a-table": ("nodes.county", "must be a table"),
    "coordinator-not-a-table": ("coordinator", "must be a table"),
}


@pytest.mark.parametrize(("case", "swap", "key", "fix"), BAD, ids=[b[0] for b in BAD])
def test_every_mistake_names_file_key_and_fix(
    conf_dir: Path, case: str, swap: tuple[str, str], key: str, fix: str
) -> None:
    """Property: each bad input raises ConfigError (never KeyError/TypeError/ValueError) whose
    message starts with the file, names the offending key and says how to fix it."""
    text = _bad_text(case, valid_text(conf_dir), *swap)
    path = write(conf_dir.parent, text)
    key, fix = EXPECTED_SPECIAL.get(case, (key, fix))
    with pytest.raises(ConfigError) as info:
        load_coordinator_config(path)
    message = info.value.message
    assert message.startswith(f"{path}: "), message
    assert key in message, message
    assert fix in message, message


def test_missing_sections_are_named(conf_dir: Path) -> None:
    """Property: a file without [coordinator], [tls] or [nodes] says which section to add."""
    for section, cut in (
        ("coordinator", ("[coordinator]", "[tls]")),
        ("tls", ("[tls]", "[access]")),
        ("nodes", ("[nodes.district-a]", None)),
    ):
        text = valid_text(conf_dir)
        start = text.index(cut[0])
        end = text.index(cut[1]) if cut[1] else len(text)
        path = write(conf_dir.parent, text[:start] + text[end:])
        with pytest.raises(ConfigError) as info:
            load_coordinator_config(path)
        assert info.value.message.startswith(f"{path}: missing [{section}] section"), info.value.message
        assert "README" in info.value.message


def test_empty_nodes_table_says_to_add_one(conf_dir: Path) -> None:
    """Property: `[nodes]` with nothing in it asks for a [nodes.NAME] table with an address."""
    text = valid_text(conf_dir)
    text = text[: text.index("[nodes.district-a]")] + "[nodes]\n"
    path = write(conf_dir.parent, text)
    with pytest.raises(ConfigError, match=r"nodes: no nodes configured; add a \[nodes.NAME\] table"):
        load_coordinator_config(path)


def test_duplicate_node_table_is_a_toml_error(conf_dir: Path) -> None:
    """Property: declaring the same node twice is refused (by TOML itself) naming the file."""
    text = valid_text(conf_dir) + '\n[nodes.county]\naddress = "127.0.0.1:1"\n'
    path = write(conf_dir.parent, text)
    with pytest.raises(ConfigError) as info:
        load_coordinator_config(path)
    assert info.value.message.startswith(f"{path}: not valid TOML")
    assert "fix the syntax" in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    """Property: a config path that does not exist says so and points at --config."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_coordinator_config(path)
    assert info.value.message == f"{path}: no such file; pass the coordinator config with --config"


def test_invalid_toml(tmp_path: Path) -> None:
    """Property: a syntax error names the file, the TOML problem (with its line) and the fix."""
    path = write(tmp_path, '[coordinator]\nname = "coordinator\n')
    with pytest.raises(ConfigError) as info:
        load_coordinator_config(path)
    assert info.value.message.startswith(f"{path}: not valid TOML: ")
    assert "line 2" in info.value.message


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    """Property: a directory or a non-UTF-8 file where the config should be is a ConfigError
    naming the path, not a raw IsADirectoryError/UnicodeDecodeError."""
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00name = 1\n")
    for path in (folder, binary):
        with pytest.raises(ConfigError) as info:
            load_coordinator_config(path)
        assert info.value.message.startswith(f"{path}: cannot read the file")
        assert "readable UTF-8 TOML" in info.value.message


# ---- the analyst's profile -----------------------------------------------------------------

PROFILE = """
coordinator = "127.0.0.1:50050"
cert = "certs/analysts/alice.pem"
key = "certs/analysts/alice.key"
ca = "/etc/accord/ca.pem"
"""


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles" / "alice.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_profile_loads_with_paths_relative_to_the_profile(tmp_path: Path) -> None:
    """Property: a valid profile becomes a frozen Profile; relative paths start at the profile's
    folder, absolute ones are kept, and the coordinator's certificate name defaults."""
    path = write_profile(tmp_path, PROFILE)
    profile = load_profile(path)
    assert profile == Profile(
        coordinator="127.0.0.1:50050",
        tls=TlsFiles(
            tmp_path / "profiles/certs/analysts/alice.pem",
            tmp_path / "profiles/certs/analysts/alice.key",
            Path("/etc/accord/ca.pem"),
        ),
        coordinator_name="coordinator",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.coordinator = "x"  # type: ignore[misc]


def test_profile_coordinator_name_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Property: coordinator_name is taken as written, and ``~`` expands in the profile path and
    in the certificate paths."""
    monkeypatch.setenv("HOME", str(tmp_path))
    write_profile(
        tmp_path,
        PROFILE.replace('"certs/analysts/alice.pem"', '"~/alice.pem"') + 'coordinator_name = "hub"\n',
    )
    profile = load_profile("~/profiles/alice.toml")
    assert profile.coordinator_name == "hub"
    assert profile.tls.cert == tmp_path / "alice.pem"


BAD_PROFILES = [
    (
        "unknown-key",
        PROFILE + 'coordinatr_name = "x"\n',
        "coordinatr_name: unknown key; did you mean 'coordinator_name'?",
    ),
    (
        "unrelated-key",
        PROFILE + "zzz = 1\n",
        "zzz: unknown key; allowed keys: agreement, ca, cert, coordinator, coordinator_name, key",
    ),
    ("missing-ca", PROFILE.replace('ca = "/etc/accord/ca.pem"\n', ""), "ca: is required; add `ca = ...`"),
    (
        "missing-two",
        PROFILE.replace('ca = "/etc/accord/ca.pem"\n', "").replace('coordinator = "127.0.0.1:50050"\n', ""),
        "coordinator: is required; add `coordinator = ...`",
    ),
    (
        "not-a-string",
        PROFILE.replace('"127.0.0.1:50050"', "50050"),
        "coordinator: must be a string, not an integer",
    ),
    (
        "bad-address",
        PROFILE.replace('"127.0.0.1:50050"', '"https://127.0.0.1:50050"'),
        "coordinator: 'https://127.0.0.1:50050' is not host:port",
    ),
    (
        "name-not-a-string",
        PROFILE + "coordinator_name = 3\n",
        "coordinator_name: must be a string, not an integer",
    ),
    ("name-empty", PROFILE + 'coordinator_name = ""\n', "coordinator_name: '' is not a certificate name"),
    ("invalid-toml", PROFILE + "cert = \n", "not valid TOML"),
]


@pytest.mark.parametrize(("case", "text", "says"), BAD_PROFILES, ids=[b[0] for b in BAD_PROFILES])
def test_bad_profile_names_file_key_and_fix(tmp_path: Path, case: str, text: str, says: str) -> None:
    """Property: every bad profile is a ConfigError starting with the profile's path and saying
    which key is wrong and what to write instead."""
    path = write_profile(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert info.value.message.startswith(f"{path}: "), info.value.message
    assert says in info.value.message, info.value.message


def test_missing_or_unreadable_profile(tmp_path: Path) -> None:
    """Property: a missing profile points at --profile or the four connection options; a folder
    in its place is a ConfigError too, not a raw IsADirectoryError."""
    path = tmp_path / "none.toml"
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert (
        info.value.message == f"{path}: no such file; pass --profile FILE or --coordinator/--cert/--key/--ca"
    )
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_profile(tmp_path)


def test_writer_round_trips(tmp_path: Path) -> None:
    """Property: write_coordinator_config writes what load_coordinator_config reads back as the same
    config (TLS paths inside the folder relative to it, the CA elsewhere absolute)."""
    conf_dir = tmp_path / "conf"
    cfg = load_coordinator_config(write(tmp_path, valid_text(conf_dir)))
    cfg = dataclasses.replace(cfg, report_node_timings=True, max_in_flight=5)
    out = write_coordinator_config(cfg, conf_dir / "copy.toml")
    assert load_coordinator_config(out) == cfg
    assert 'cert = "certs/coordinators/coordinator.pem"' in out.read_text(encoding="utf-8")
