"""Settings: defaults, validation, the file < environment < flags precedence, and CLI parsing in-process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from wsa_fast.cli import build_parser, load_app, main
from wsa_fast.config import ConfigError, Settings, load_settings


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep WSA_* variables of the machine running the tests out of main()."""
    for name in [name for name in os.environ if name.startswith("WSA_")]:
        monkeypatch.delenv(name)


# Defaults and validation


def test_defaults_match_the_profile() -> None:
    settings = load_settings({}, environ={})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.request_timeout) == ("127.0.0.1", 8765, 30.0)
    assert settings.max_message_size == 1048576
    assert settings.max_bad_messages == 20
    assert settings.id_style == "iso8601"
    assert settings.duplicate_login == "replace"
    assert settings.jwt_algorithms == ("HS256", "RS256", "ES256")
    assert settings.auth is None
    assert (settings.workers, settings.nats, settings.cluster_name) == (1, None, "wsa")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"port": 65536}, "port"),
        ({"port": -1}, "port"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"request_timeout": float("inf")}, "request_timeout"),
        ({"drain_timeout": -1}, "drain_timeout"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"max_bad_messages": 0}, "max_bad_messages"),
        ({"duplicate_login": "kick"}, "duplicate_login"),
        ({"id_style": "uuid"}, "id_style"),
        ({"log_level": "loud"}, "log_level"),
        ({"auth": "ldap"}, "auth"),
        ({"auth": "tokens:"}, "file path"),
        ({"auth": "jwt"}, "jwt_secret"),
        ({"app": "no_colon"}, "module:attr"),
        ({"jwt_algorithms": ()}, "jwt_algorithms"),
        ({"port": True}, "integer"),
        ({"host": 80}, "string"),
        ({"workers": 0}, "workers"),
        ({"workers": 257}, "workers"),
        ({"nats": "ws://10.0.0.1:4222"}, "only nats:// and tls://"),
        ({"nats_ca_file": "/etc/ssl/certs/ca-certificates.crt"}, "needs --nats"),
        ({"nats": "tls://h", "nats_ca_file": "/nonexistent/ca.pem"}, "cannot load the CA file"),
        ({"nats": "nats://h", "nats_creds_file": "/nonexistent/u.creds"}, "cannot read /nonexistent/u.creds"),
        ({"nats": "nats://h", "nats_nkey_seed_file": "/etc/hostname"}, "expected one user NKEY seed"),
        ({"nats": "nats://h", "nats_creds_file": "/etc/hostname"}, "expected a user JWT and an NKEY seed"),
        ({"nats": "nats://:4222"}, "no host"),
        ({"nats": "nats://h:port"}, "bad port"),
        ({"nats": " , "}, "no NATS server"),
        ({"nats": "foo"}, "give nats://HOST"),  # not silently nats://foo:4222
        ({"nats": "nats://a:4222,foo"}, "'foo': give nats://HOST"),
        ({"cluster_name": "wsa.prod"}, "cluster_name"),
        ({"cluster_name": ""}, "cluster_name"),
    ],
)
def test_invalid_values_are_refused_with_a_clear_message(overrides: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings(**overrides)  # type: ignore[arg-type]


def test_values_are_normalised() -> None:
    settings = Settings(request_timeout=5, jwt_algorithms=["HS256"], port=0)  # type: ignore[arg-type]
    assert settings.request_timeout == 5.0 and isinstance(settings.request_timeout, float)
    assert settings.jwt_algorithms == ("HS256",)


def test_jwt_needs_a_secret_or_a_public_key() -> None:
    assert Settings(auth="jwt", jwt_secret="s").resolved_auth() == "jwt"
    assert Settings(auth="jwt", jwt_public_key="key.pem").resolved_auth() == "jwt"


def test_secret_stays_out_of_repr() -> None:
    assert "hunter2" not in repr(Settings(auth="jwt", jwt_secret="hunter2"))


def test_tokens_path() -> None:
    assert Settings(auth="tokens:/etc/wsa/tokens").tokens_path == "/etc/wsa/tokens"
    assert Settings(auth="dev").tokens_path is None


# Implicit dev auth


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_dev_auth_is_the_default_on_loopback(host: str) -> None:
    assert Settings(host=host).resolved_auth() == "dev"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_dev_auth_is_refused_off_loopback_unless_explicit(host: str) -> None:
    with pytest.raises(ConfigError, match="refusing to start with dev auth on a non-loopback host"):
        Settings(host=host).resolved_auth()
    assert Settings(host=host, auth="dev").resolved_auth() == "dev"


def test_explicit_auth_wins_on_loopback() -> None:
    assert Settings(auth="tokens:t.txt").resolved_auth() == "tokens:t.txt"


# Precedence: defaults < file < environment < flags


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    config = write(tmp_path / "wsa.toml", 'port = 1000\nrequest_timeout = 5\nid_style = "short"\nhost = "0.0.0.0"\n')
    environ = {"WSA_PORT": "2000", "WSA_REQUEST_TIMEOUT": "7.5"}
    flags: dict[str, object] = {"config": config, "port": 3000, "request_timeout": None, "host": None}

    assert load_settings({"config": config}, environ={}).port == 1000
    assert load_settings({"config": config}, environ=environ).port == 2000
    settings = load_settings(flags, environ=environ)
    assert settings.port == 3000
    assert settings.request_timeout == 7.5  # a None flag does not override
    assert settings.id_style == "short"  # only the file sets it
    assert settings.host == "0.0.0.0"
    assert settings.max_bad_messages == 20  # nobody sets it


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "wsa.toml", "max_bad_messages = 4\n")
    assert load_settings({}, environ={"WSA_CONFIG": config}).max_bad_messages == 4


def test_config_flag_beats_config_variable(tmp_path: Path) -> None:
    by_flag = write(tmp_path / "flag.toml", "max_bad_messages = 2\n")
    by_env = write(tmp_path / "env.toml", "max_bad_messages = 3\n")
    assert load_settings({"config": by_flag}, environ={"WSA_CONFIG": by_env}).max_bad_messages == 2


def test_environment_strings_are_converted() -> None:
    settings = load_settings(
        {},
        environ={
            "WSA_PORT": " 9000 ",
            "WSA_JWT_ALGORITHMS": "HS256, ES256",
            "WSA_JWT_LEEWAY": "1.5",
            "WSA_AUTH": "jwt",
            "WSA_JWT_SECRET": "s",
            "WSA_APP": "",  # empty counts as unset
            "WSA_UNRELATED": "ignored",
        },
    )
    assert settings.port == 9000
    assert settings.jwt_algorithms == ("HS256", "ES256")
    assert settings.jwt_leeway == 1.5
    assert settings.app is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WSA_PORT", "eighty"), ("WSA_PORT", "70000"), ("WSA_REQUEST_TIMEOUT", "soon"), ("WSA_ID_STYLE", "uuid")],
)
def test_bad_environment_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        load_settings({}, environ={variable: value})


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="^--max-message-size: "):
        load_settings({"max_message_size": -5}, environ={})


def test_cluster_settings_from_flags_and_environment() -> None:
    settings = load_settings(
        {"workers": 4, "nats": None},
        environ={"WSA_NATS": "nats://a:4222, nats://user:pw@b", "WSA_CLUSTER_NAME": "chat-eu"},
    )
    assert (settings.workers, settings.cluster_name) == (4, "chat-eu")
    from wsa_fast.nats_client import parse_servers

    servers = parse_servers(settings.nats)
    assert [(s.host, s.port, s.user, s.password) for s in servers] == [
        ("a", 4222, None, None),
        ("b", 4222, "user", "pw"),
    ]
    assert [(s.host, s.port) for s in parse_servers("n1:4223, tls://n2")] == [("n1", 4223), ("n2", 4222)]
    args = build_parser().parse_args(["serve", "--workers", "2", "--nats", "nats://n:1", "--cluster-name", "x"])
    assert (args.workers, args.nats, args.cluster_name) == (2, "nats://n:1", "x")


def test_unknown_flag_is_refused() -> None:
    with pytest.raises(ConfigError, match="'colour'"):
        load_settings({"colour": "blue"}, environ={})


# The TOML file


def test_toml_with_wsa_table(tmp_path: Path) -> None:
    config = write(tmp_path / "wsa.toml", '[wsa]\nport = 4000\njwt_algorithms = ["RS256"]\nauth = "dev"\n')
    settings = load_settings({"config": config}, environ={})
    assert (settings.port, settings.jwt_algorithms, settings.auth) == (4000, ("RS256",), "dev")


def test_toml_top_level_and_table_together(tmp_path: Path) -> None:
    config = write(tmp_path / "wsa.toml", 'host = "::1"\n[wsa]\nport = 4000\n')
    settings = load_settings({"config": config}, environ={})
    assert (settings.host, settings.port) == ("::1", 4000)


def test_toml_key_in_both_places_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "wsa.toml", "port = 1\n[wsa]\nport = 2\n")
    with pytest.raises(ConfigError, match="'port' is set both"):
        load_settings({"config": config}, environ={})


@pytest.mark.parametrize("text", ["prot = 1\n", "[wsa]\nprot = 1\n", "[prot]\nport = 1\n"])
def test_toml_unknown_key_is_named(tmp_path: Path, text: str) -> None:
    config = write(tmp_path / "wsa.toml", text)
    with pytest.raises(ConfigError, match="unknown key 'prot'"):
        load_settings({"config": config}, environ={})


def test_toml_wrong_type_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "wsa.toml", 'max_bad_messages = "many"\n')
    with pytest.raises(ConfigError, match=r"wsa\.toml: max_bad_messages must be an integer"):
        load_settings({"config": config}, environ={})


def test_toml_syntax_error(tmp_path: Path) -> None:
    config = write(tmp_path / "wsa.toml", "port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"config": config}, environ={})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({"config": str(tmp_path / "absent.toml")}, environ={})


# The command line, parsed in-process


def test_flags_default_to_none_so_they_do_not_override() -> None:
    args = build_parser().parse_args(["serve", "--port", "9000", "--log-level", "DEBUG"])
    assert args.port == 9000 and args.log_level == "debug"
    assert args.host is None and args.request_timeout is None and args.auth is None


def test_help_and_version_exit_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["serve", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
    assert "wsa-fast" in capsys.readouterr().out


def test_config_error_exits_2_with_message(clean_environ: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert capsys.readouterr().err.startswith("wsa-fast: error: refusing to start with dev auth")
    assert main(["serve", "--port", "99999"]) == 2
    assert "wsa-fast: error: --port: " in capsys.readouterr().err


def test_load_app_from_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "wsa_test_app_module.py", "from wsa_fast import App\napp = App()\nnot_an_app = object()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    app = load_app("wsa_test_app_module:app")
    assert app is sys.modules["wsa_test_app_module"].app
    with pytest.raises(ConfigError, match="has no attribute 'missing'"):
        load_app("wsa_test_app_module:missing")
    with pytest.raises(ConfigError, match="is not a wsa_fast.App \\(it is a 'object'\\)"):
        load_app("wsa_test_app_module:not_an_app")
    with pytest.raises(ConfigError, match="no module named 'wsa_no_such_module'"):
        load_app("wsa_no_such_module:app")


# The production surface: TLS, admin port, log format, allowed origins


def test_production_settings_from_toml_and_environment(tmp_path: Path) -> None:
    config = write(
        tmp_path / "wsa.toml",
        'allowed_origins = ["https://app.example.com"]\nadmin_port = 9100\n'
        'tls_cert = "/etc/wsa/cert.pem"\ntls_key = "/etc/wsa/key.pem"\n',
    )
    settings = load_settings({"config": config}, environ={"WSA_LOG_FORMAT": "json"})
    assert settings.allowed_origins == ("https://app.example.com",)
    assert (settings.admin_host, settings.admin_port, settings.log_format) == ("127.0.0.1", 9100, "json")
    assert settings.scheme == "wss"
    env = {"WSA_ALLOWED_ORIGINS": "https://a.example, https://b.example"}
    assert load_settings({}, environ=env).allowed_origins == ("https://a.example", "https://b.example")


def test_origin_check_is_exact_but_ignores_case_and_a_trailing_slash() -> None:
    settings = Settings(allowed_origins=("https://App.example.com",))
    assert settings.origin_allowed("https://app.example.com/")
    assert not settings.origin_allowed("https://app.example.com.evil.net")
    assert not settings.origin_allowed("http://app.example.com")
    assert Settings(allowed_origins=("*",)).origin_allowed("https://anything.example")
    assert Settings().origin_allowed("https://anything.example")


@pytest.mark.parametrize(
    "values, setting",
    [
        ({"tls_key": "/k.pem"}, "tls_cert"),
        ({"tls_cert": "/c.pem"}, "tls_key"),
        ({"log_format": "xml"}, "log_format"),
        ({"admin_port": 70000}, "admin_port"),
        ({"admin_port": 8765}, "admin_port"),
        ({"admin_host": ""}, "admin_host"),
    ],
)
def test_bad_production_settings_name_the_setting(values: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings(**values)
    assert error.value.setting == setting
