"""The server API's settings and keys: where keys may come from, and how a presented key is told apart."""

from __future__ import annotations

from pathlib import Path

import pytest

import config.settings as settings_module
from api.keys import ApiKeys, key_id
from config.cli import load_settings
from config.settings import SettingsError

KEY_A = "a" * 40
KEY_B = "b" * 40


@pytest.fixture(autouse=True)
def no_default_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(settings_module, "DEFAULT_FILE", tmp_path / "absent.toml")


def test_the_api_is_off_unless_a_port_is_set() -> None:
    settings = load_settings([], {})
    assert settings.api_port is None and settings.api_host == "127.0.0.1" and settings.api_keys == ()


def test_keys_come_from_the_environment_or_a_file_several_at_once(tmp_path: Path) -> None:
    settings = load_settings(["--api-port", "0"], {"CHAT_API_KEYS": f" {KEY_A} , {KEY_B} "})
    assert settings.api_port == 0 and settings.api_keys == (KEY_A, KEY_B)
    config = tmp_path / "api.toml"
    config.write_text(f'api_port = 9001\napi_keys = ["{KEY_A}"]\n')
    assert load_settings(["--config", str(config)], {}).api_keys == (KEY_A,)
    assert KEY_A not in repr(settings)


def test_keys_are_refused_on_the_command_line_and_short_keys_anywhere() -> None:
    with pytest.raises(SettingsError, match="--api-keys is not a flag"):
        load_settings(["--api-keys", KEY_A], {})
    with pytest.raises(SettingsError) as short:
        load_settings(["--api-port", "0"], {"CHAT_API_KEYS": "short-key"})
    assert "short-key" not in str(short.value)
    with pytest.raises(SettingsError, match="needs at least one key"):
        load_settings(["--api-port", "9001"], {})


def test_a_key_is_known_by_its_id_and_a_wrong_one_by_nothing() -> None:
    keys = ApiKeys((KEY_A, KEY_B), rate=0, burst=1)
    assert keys.identify(f"Bearer {KEY_A}") == key_id(KEY_A) and keys.identify(f"bearer {KEY_B}") == key_id(KEY_B)
    assert len(key_id(KEY_A)) == 8 and key_id(KEY_A) not in KEY_A
    for header in (None, "", "Bearer ", f"Basic {KEY_A}", f"Bearer {KEY_A}x", f"Bearer {KEY_A[:-1]}", "Bearer \udcff"):
        assert keys.identify(header) is None, header
