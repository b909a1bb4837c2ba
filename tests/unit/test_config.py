"""Settings: flags over environment over defaults, and one-line errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.config import ConfigError, load_settings


def test_defaults() -> None:
    s = load_settings({}, {})
    assert (s.sip_host, s.sip_port, s.http_host, s.http_port) == ("0.0.0.0", 5060, "0.0.0.0", 8080)
    assert s.data_dir == Path("./var") and s.redis_url is None and not s.demo
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///") and s.effective_database_url.endswith("var/ctihub.db")


def test_flags_override_environment() -> None:
    env = {"CTIHUB_SIP_PORT": "5070", "CTIHUB_HTTP_PORT": "9000", "CTIHUB_DEMO": "yes"}
    s = load_settings({"sip_port": "5080"}, env)
    assert s.sip_port == 5080 and s.http_port == 9000 and s.demo


def test_postgres_and_redis_urls_are_accepted() -> None:
    s = load_settings({}, {"CTIHUB_DATABASE_URL": "postgresql+asyncpg://hub@db.internal/hub", "CTIHUB_REDIS_URL": "redis://cache:6379/0"})
    assert s.effective_database_url == "postgresql+asyncpg://hub@db.internal/hub"
    assert s.redis_url == "redis://cache:6379/0"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"CTIHUB_SIP_PORT": "-1"}, "CTIHUB_SIP_PORT"),
        ({"CTIHUB_HTTP_PORT": "65536"}, "CTIHUB_HTTP_PORT"),
        ({"CTIHUB_HTTP_HOST": "bad host"}, "CTIHUB_HTTP_HOST"),
        ({"CTIHUB_DATABASE_URL": "postgresql://x/db"}, "CTIHUB_DATABASE_URL"),
        ({"CTIHUB_DATABASE_URL": "postgresql+asyncpg://x"}, "CTIHUB_DATABASE_URL"),
        ({"CTIHUB_DATABASE_URL": "::nonsense::"}, "CTIHUB_DATABASE_URL"),
        ({"CTIHUB_REDIS_URL": "redis://"}, "CTIHUB_REDIS_URL"),
        ({"CTIHUB_RTP_PORTS": "20000-20000"}, "CTIHUB_RTP_PORTS"),
        ({"CTIHUB_DEFAULT_REGION": "XX"}, "CTIHUB_DEFAULT_REGION"),
        ({"CTIHUB_DEMO": "perhaps"}, "CTIHUB_DEMO"),
        ({"CTIHUB_LOG_LEVEL": "LOUD"}, "CTIHUB_LOG_LEVEL"),
        ({"CTIHUB_RECORDING_DEFAULT": "sometimes"}, "CTIHUB_RECORDING_DEFAULT"),
        ({"CTIHUB_RECORDING_NOTICE": "/nonexistent/notice.wav"}, "CTIHUB_RECORDING_NOTICE"),
        ({"CTIHUB_RECORDING_NOTICE": __file__}, "CTIHUB_RECORDING_NOTICE"),  # not a WAV
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, env)
    assert caught.value.setting.startswith(setting)
    assert "\n" not in str(caught.value)


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ConfigError, match="CTIHUB_DATA_DIR"):
        load_settings({"data_dir": str(file)}, {})


def test_a_notice_that_is_not_8khz_mono_is_refused(tmp_path: Path) -> None:
    import wave

    notice = tmp_path / "notice.wav"
    with wave.open(str(notice), "wb") as wav:  # CD quality: the hub plays 8 kHz G.711
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(bytes(4 * 441))
    with pytest.raises(ConfigError) as caught:
        load_settings({"data_dir": str(tmp_path)}, {"CTIHUB_RECORDING_NOTICE": str(notice)})
    assert caught.value.setting.startswith("CTIHUB_RECORDING_NOTICE") and "8 kHz mono" in str(caught.value)
    good = tmp_path / "good.wav"
    with wave.open(str(good), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(1600))
    assert load_settings({"data_dir": str(tmp_path)}, {"CTIHUB_RECORDING_NOTICE": str(good)}).recording_notice == str(good)
