"""The settings (config/settings.py, cli.py, flags.py, values.py): flag > environment > file > default, loud errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import config.cli as cli_module
import config.settings as settings_module
import server
from config.cli import build_arg_parser, load_settings
from config.settings import Settings, SettingsError


@pytest.fixture
def no_default_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only built-in defaults below the given file: config/chat.toml may change."""
    monkeypatch.setattr(settings_module, "DEFAULT_FILE", tmp_path / "absent.toml")


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chat.toml"
    path.write_text(text)
    return path


# ---- precedence ---------------------------------------------------------------


@pytest.mark.usefixtures("no_default_file")
def test_a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default(tmp_path: Path) -> None:
    file = str(toml(tmp_path, "history = 10\nretention = 11\nrate_burst = 12\n"))
    env = {"CHAT_HISTORY": "20", "CHAT_RETENTION": "21"}
    settings = load_settings(["--config", file, "--history", "30"], env)
    assert (settings.history, settings.retention, settings.rate_burst) == (30, 21, 12)
    assert settings.max_message_chars == Settings().max_message_chars == 4096  # nobody set it


@pytest.mark.usefixtures("no_default_file")
def test_nothing_given_is_the_built_in_default() -> None:
    settings = load_settings([], {})
    defaults = Settings()
    for name in (
        "host",
        "port",
        "history",
        "retention",
        "rate_limit",
        "rate_burst",
        "redis_url",
        "allowed_origins",
        "behind_proxy",
        "resend_window",
        "send_buffer_limit",
    ):
        assert getattr(settings, name) == getattr(defaults, name), name
    assert not settings.uses_redis
    assert (settings.history_bytes, settings.memory_budget) == (1 << 20, 256 << 20)  # README, Memory


def test_the_shipped_file_is_read_below_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "DEFAULT_FILE", toml(tmp_path, "history = 7\nretention = 8\n"))
    settings = load_settings([], {"CHAT_RETENTION": "9"})
    assert (settings.history, settings.retention) == (7, 9)


def test_the_config_file_may_come_from_the_environment_and_beats_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "shipped.toml"
    shipped.write_text("history = 1\nretention = 2\n")
    monkeypatch.setattr(settings_module, "DEFAULT_FILE", shipped)
    extra = toml(tmp_path, "history = 5\n")
    settings = load_settings([], {"CHAT_CONFIG": str(extra)})
    assert (settings.history, settings.retention) == (5, 2)


@pytest.mark.usefixtures("no_default_file")
@pytest.mark.parametrize(
    "environ,expected",
    [
        ({"REDIS_URL": "redis://a:1/0"}, "redis://a:1/0"),
        ({"REDIS_URL": "redis://a:1/0", "CHAT_REDIS_URL": "redis://b:2/0"}, "redis://b:2/0"),
        ({"REDIS_URL": ""}, None),
        ({"CHAT_REDIS_URL": "  "}, None),
    ],
)
def test_redis_url_comes_from_redis_url_or_chat_redis_url(environ: dict[str, str], expected: str | None) -> None:
    settings = load_settings([], environ)
    assert settings.redis_url == expected and settings.uses_redis == (expected is not None)


@pytest.mark.usefixtures("no_default_file")
@pytest.mark.parametrize(
    "argv,environ,expected",
    [
        ([], {}, False),
        (["--behind-proxy"], {}, True),
        (["--behind-proxy"], {"CHAT_BEHIND_PROXY": "false"}, True),
        ([], {"CHAT_BEHIND_PROXY": "yes"}, True),
        ([], {"CHAT_BEHIND_PROXY": " ON "}, True),
        ([], {"CHAT_BEHIND_PROXY": "1"}, True),
        ([], {"CHAT_BEHIND_PROXY": "true"}, True),
        ([], {"CHAT_BEHIND_PROXY": "off"}, False),
        ([], {"CHAT_BEHIND_PROXY": "0"}, False),
        ([], {"CHAT_BEHIND_PROXY": "no"}, False),
        ([], {"CHAT_BEHIND_PROXY": "False"}, False),
        ([], {"CHAT_BEHIND_PROXY": ""}, False),
    ],
)
def test_switches_take_the_usual_spellings(argv: list[str], environ: dict[str, str], expected: bool) -> None:
    assert load_settings(argv, environ).behind_proxy is expected


@pytest.mark.usefixtures("no_default_file")
def test_a_toml_boolean_is_taken_as_it_is(tmp_path: Path) -> None:
    file = toml(tmp_path, "log_message_text = true\nbehind_proxy = false\n")
    settings = load_settings(["--config", str(file)], {})
    assert settings.log_message_text is True and settings.behind_proxy is False


@pytest.mark.usefixtures("no_default_file")
@pytest.mark.parametrize(
    "raw,expected",
    [
        ("https://Chat.Example.com/, http://b.example:8080", ("https://chat.example.com", "http://b.example:8080")),
        ("http://LOCAL.BOX//", ("http://local.box",)),
        ("", ()),
        (" , ", ()),
    ],
)
def test_allowed_origins_are_a_normalised_comma_separated_list(raw: str, expected: tuple[str, ...]) -> None:
    assert load_settings(["--allowed-origins", raw], {}).allowed_origins == expected


@pytest.mark.usefixtures("no_default_file")
def test_allowed_origins_may_be_a_toml_list(tmp_path: Path) -> None:
    file = toml(tmp_path, 'allowed_origins = ["https://a.example", " http://b.example/ "]\n')
    assert load_settings(["--config", str(file)], {}).allowed_origins == ("https://a.example", "http://b.example")


@pytest.mark.usefixtures("no_default_file")
@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--port", "0"], 0),
        (["--port", "65535"], 65535),
        (["--history", "1"], 1),
        (["--rate-limit", "0"], 0.0),
        (["--rate-limit", "2.5"], 2.5),
        (["--resend-window", "0"], 0.0),
        (["--log-format", "console"], "console"),
        (["--log-format", "json"], "json"),
        (["--redis-url", "unix:///run/redis.sock"], "unix:///run/redis.sock"),
        (["--redis-url", " rediss://h:1 "], "rediss://h:1"),
        (["--history-bytes", "0"], 0),
        (["--history-bytes", "65536"], 65536),
        (["--history-bytes", "64k"], 65536),
        (["--history-bytes", "1M"], 1 << 20),
        (["--memory-budget", "256MiB"], 256 << 20),
        (["--memory-budget", "2g"], 2 << 30),
        (["--metrics-interval", "0.1"], 0.1),
        (["--metrics-top-rooms", "0"], 0),
    ],
)
def test_edge_values_are_accepted(argv: list[str], expected: object) -> None:
    name = argv[0][2:].replace("-", "_")
    assert getattr(load_settings(argv, {}), name) == expected


# ---- derived values ------------------------------------------------------------


@pytest.mark.usefixtures("no_default_file")
def test_empty_node_id_secret_and_log_format_are_filled_in() -> None:
    settings = load_settings(["--port", "9001"], {})
    assert settings.node_id == f"{socket.gethostname()}-9001"
    assert len(settings.cookie_secret) == 43 and settings.cookie_secret_generated  # 32 random bytes, base64url
    assert settings.log_format == "json"  # stdout is not a terminal under pytest
    assert load_settings([], {}).cookie_secret != settings.cookie_secret  # random per process


@pytest.mark.usefixtures("no_default_file")
def test_given_node_id_secret_and_log_format_are_kept() -> None:
    secret = "s3" * 16  # at least 32 bytes
    settings = load_settings(["--node-id", "n1", "--log-format", "console"], {"CHAT_COOKIE_SECRET": secret})
    assert (settings.node_id, settings.cookie_secret, settings.log_format) == ("n1", secret, "console")
    assert not settings.cookie_secret_generated


# ---- invalid values: an error naming the setting and the value -------------------

BAD = [
    (["--port", "65536"], "port", "65536"),
    (["--port", "-1"], "port", "-1"),
    (["--port", "http"], "port", "http"),
    (["--history", "-1"], "history", "-1"),  # 0 replays nothing; below that, nothing means anything
    (["--history", "1.5"], "history", "1.5"),
    (["--retention", "-3"], "retention", "-3"),
    (["--rate-limit", "-1"], "rate_limit", "-1"),
    (["--rate-limit", "fast"], "rate_limit", "fast"),
    (["--log-format", "xml"], "log_format", "xml"),
    (["--event-loop", "trio"], "event_loop", "trio"),
    (["--redis-url", "http://h:1"], "redis_url", ""),
    (["--allowed-origins", "ftp://a.example"], "allowed_origins", "ftp://a.example"),
    (["--allowed-origins", "https://a.example/path"], "allowed_origins", "https://a.example/path"),
    (["--allowed-origins", "https://"], "allowed_origins", "https:"),  # the trailing / goes first
    (["--allowed-origins", "a.example"], "allowed_origins", "a.example"),
    (["--history-bytes", "1x"], "history_bytes", "1x"),
    (["--history-bytes", "-1"], "history_bytes", "-1"),
    (["--memory-budget", "1.5g"], "memory_budget", "1.5g"),
    (["--metrics-interval", "0"], "metrics_interval", "0"),  # the sampler also empties the per-room counts
    (["--metrics-top-rooms", "-1"], "metrics_top_rooms", "-1"),
]


@pytest.mark.usefixtures("no_default_file")
@pytest.mark.parametrize("argv,name,value", BAD)
def test_a_bad_flag_is_an_error_naming_the_flag_and_the_value(argv: list[str], name: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(argv, {})
    assert str(error.value).startswith(argv[0] + " ") and value in str(error.value)


@pytest.mark.usefixtures("no_default_file")
@pytest.mark.parametrize(
    "key,raw", [("CHAT_BEHIND_PROXY", "maybe"), ("CHAT_PRESENCE_TIMEOUT", "-2"), ("CHAT_MAX_FRAME_BYTES", "big")]
)
def test_a_bad_environment_value_is_an_error_too(key: str, raw: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings([], {key: raw})
    assert str(error.value).startswith(key + " ") and raw in str(error.value)


@pytest.mark.usefixtures("no_default_file")
@pytest.mark.parametrize(
    "text,message",
    [
        ("colour = 'red'\nhue = 1\n", "unknown settings: colour, hue"),
        ("history = [", "not valid TOML"),
        ("retention = 0\n", "retention in "),
    ],
)
def test_a_bad_config_file_is_an_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    file = toml(tmp_path, text)
    with pytest.raises(SettingsError) as error:
        load_settings(["--config", str(file)], {})
    assert message in str(error.value)


@pytest.mark.usefixtures("no_default_file")
def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(["--config", str(tmp_path / "nope.toml")], {})
    assert "cannot read config file" in str(error.value) and "nope.toml" in str(error.value)


@pytest.mark.usefixtures("no_default_file")
@pytest.mark.parametrize("argv", [["--port", "x"], ["--history", "-1"], ["--log-format", "xml"]])
def test_server_exits_2_with_the_error_on_stderr(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert server.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("server.py: ") and argv[1] in captured.err
    assert captured.out == ""


def test_help_lists_every_setting(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as done:
        load_settings(["--help"], {})
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: server.py ") and "\nRoom chat server: " in out
    words = " ".join(out.split())  # however argparse wraps the lines
    for flag, help_text in [
        ("--config FILE", "TOML file with settings, over config/chat.toml"),
        ("--port PORT", "port to listen on (default: 8888; env CHAT_PORT)"),
        ("--redis-url URL", "Redis URL; without it the in-process bus is used"),
        ("--behind-proxy", "trust X-Forwarded-For/-Proto/-Host from the proxy"),
        ("--resend-window WINDOW", "seconds a client_id is remembered"),
        ("--redis-cluster", "the Redis URL names one node of a Redis Cluster"),
    ]:
        assert f" {flag} {help_text} " in words, flag


@pytest.mark.usefixtures("no_default_file")
def test_without_argv_the_command_line_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["server.py", "--port", "9002"])
    assert load_settings(None, {}).port == 9002


@pytest.mark.usefixtures("no_default_file")
def test_on_a_terminal_the_log_format_is_for_people(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdout", Terminal())
    assert load_settings([], {}).log_format == "console"
    assert load_settings(["--log-format", "json"], {}).log_format == "json"


@pytest.mark.usefixtures("no_default_file")
def test_an_empty_log_format_means_choose_by_terminal() -> None:
    assert load_settings([], {"CHAT_LOG_FORMAT": ""}).log_format == "json"  # stdout is not a terminal here


# ---- the help of each flag, the secret's rules ----------------------------------------


@pytest.mark.parametrize(
    "name,text,expected",
    [
        ("port", "port to listen on", "port to listen on (default: 8888; env CHAT_PORT)"),
        (
            "redis_url",
            "Redis URL",
            "Redis URL (default: none: the in-process bus, one process only; env CHAT_REDIS_URL or REDIS_URL)",
        ),
        ("behind_proxy", "trust the proxy", "trust the proxy (default: off; env CHAT_BEHIND_PROXY)"),
        ("rate_limit", "20% more", "20%% more (default: 20; env CHAT_RATE_LIMIT)"),  # argparse's % escaped
        ("redis_prefix", "prefix", "prefix (default: chat; env CHAT_REDIS_PREFIX)"),
    ],
)
def test_each_flags_help_names_its_default_and_its_environment_variable(name: str, text: str, expected: str) -> None:
    assert cli_module._help(name, text) == expected


def test_flags_show_the_last_word_of_their_name_as_the_value() -> None:
    usage = cli_module.build_arg_parser().format_usage()
    assert "[--redis-wait-timeout TIMEOUT]" in usage and "[--port PORT]" in usage
    assert "[--behind-proxy]" in usage and "[--config FILE]" in usage


@pytest.mark.parametrize("secret", ["s" * 32, "é" * 16])  # bytes, not characters, count
def test_a_cookie_secret_of_32_bytes_is_taken(secret: str) -> None:
    assert load_settings([], {"CHAT_COOKIE_SECRET": secret}).cookie_secret == secret


def test_a_short_cookie_secret_is_refused_without_repeating_it() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings([], {"CHAT_COOKIE_SECRET": "é" * 15})  # 30 bytes
    assert str(refused.value) == "CHAT_COOKIE_SECRET must be at least 32 bytes (got 30)"


def test_a_cookie_secret_on_the_command_line_is_refused_and_says_where_it_goes() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(["--cookie-secret", "s" * 40], {})
    assert str(refused.value) == (
        "--cookie-secret is not a flag: a command line is visible to every user of the machine; "
        "set CHAT_COOKIE_SECRET in the environment or cookie_secret in a config file"
    )
    with pytest.raises(SettingsError, match="is not a flag"):
        load_settings(["--cookie-secret=" + "s" * 40], {})


@pytest.mark.parametrize(
    "name,raw,message",
    [
        ("retention", "0", "--retention must be at least 1, got '0'"),
        ("history", "-1", "--history must not be negative, got '-1'"),
    ],
)
def test_the_error_names_the_setting_the_rule_and_the_value(name: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings([f"--{name}", raw], {})
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "raw,hosts",
    [
        ("chat.example.com", ("chat.example.com",)),
        (" A.example , b.example ,", ("a.example", "b.example")),
        ("*", ("*",)),
        ("", ()),
    ],
)
def test_allowed_hosts_are_lower_case_names(raw: str, hosts: tuple[str, ...]) -> None:
    assert load_settings([], {"CHAT_ALLOWED_HOSTS": raw}).allowed_hosts == hosts


@pytest.mark.parametrize("raw", ["http://a.example", "a.example/path", "a b"])
def test_an_allowed_host_that_is_not_a_name_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(["--allowed-hosts", raw], {})
    assert str(refused.value) == f"--allowed-hosts entries must be host names (or *), got {raw!r}"


@pytest.mark.parametrize("prefix", ["chat", "p" * 64, "a.b-c_D9"])
def test_a_redis_prefix_of_safe_characters_is_taken(prefix: str) -> None:
    assert load_settings(["--redis-prefix", prefix], {}).redis_prefix == prefix


@pytest.mark.parametrize("prefix", ["", "a:b", "x{y}", "p" * 65, "é"])
def test_a_redis_prefix_that_could_break_keys_is_refused(prefix: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(["--redis-prefix", prefix], {})
    assert str(refused.value) == f"--redis-prefix must be 1 to 64 of A-Z a-z 0-9 _ . -, got {prefix!r}"


def test_the_help_keeps_its_description_and_its_epilog_as_written() -> None:
    help_text = cli_module.build_arg_parser().format_help()
    assert cli_module._DESCRIPTION in help_text  # line breaks kept (raw formatting)
    assert cli_module._EPILOG in help_text
    assert "  server.py cluster [...]   a deployment on this machine" in help_text


@pytest.mark.parametrize(
    "argv,field,value",
    [
        (["--retention", "1"], "retention", 1),  # the least positive value is taken
        (["--rate-burst", "1"], "rate_burst", 1),
        (["--history", "0"], "history", 0),  # the least non-negative value is taken
        (["--redis-wait-replicas", "0"], "redis_wait_replicas", 0),
    ],
)
def test_the_edge_of_each_range_is_taken(argv: list[str], field: str, value: int) -> None:
    assert getattr(load_settings(argv, {}), field) == value


@pytest.mark.usefixtures("no_default_file")
def test_allowed_hosts_from_a_config_file_list(tmp_path: Path) -> None:
    file = toml(tmp_path, 'allowed_hosts = ["Chat.example", "b.example"]\n')
    assert load_settings(["--config", str(file)], {}).allowed_hosts == ("chat.example", "b.example")


@pytest.mark.parametrize(
    "argv,environ,message",
    [
        (["--log-format", "xml"], {}, "--log-format must be 'json' or 'console', got 'xml'"),
        ([], {"CHAT_LOG_FORMAT": "xml"}, "CHAT_LOG_FORMAT must be 'json' or 'console', got 'xml'"),
        ([], {"REDIS_URL": "http://x"}, "REDIS_URL must be a redis://, rediss:// or unix:// URL"),
        (["--log-level", "loud"], {}, "--log-level must be one of debug, info, warning, error, got 'loud'"),
    ],
)
def test_an_error_names_the_flag_or_variable_it_came_from(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(argv, environ)
    assert str(refused.value) == message


def test_an_error_in_a_config_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "chat.toml"
    config.write_text('log_format = "xml"\n')
    with pytest.raises(SettingsError) as refused:
        load_settings(["--config", str(config)], {})
    assert str(refused.value) == f"log_format in {config} must be 'json' or 'console', got 'xml'"


def test_no_default_in_the_help_reads_as_a_python_value() -> None:
    text = " ".join(build_arg_parser().format_help().split())
    for raw in ("(default: ()", "(default: ;", "(default: None", ".0;", "(default: False", "(default: True"):
        assert raw not in text, raw
    assert "--cookie-secret" not in text.split("commands:")[0]  # not offered as a flag


@pytest.mark.parametrize(
    "argv,access_log,level",
    [
        (["--log-format", "json"], True, "info"),
        (["--log-format", "console"], False, "info"),
        (["--log-format", "console", "--access-log"], True, "info"),
        (["--no-access-log", "--log-level", "WARNING"], False, "warning"),
    ],
)
def test_the_access_log_follows_the_log_format_unless_set(argv: list[str], access_log: bool, level: str) -> None:
    settings = load_settings(argv, {})
    assert (settings.access_log, settings.log_level) == (access_log, level)
