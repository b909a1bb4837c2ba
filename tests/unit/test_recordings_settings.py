"""The recordings' format and store settings: defaults, validation naming the setting,
and the S3 store built from them (keys from the environment variables they name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.config import ConfigError, Settings, load_settings
from recordings.s3_storage import s3_storage_from_settings

S3 = {"CTIHUB_RECORDINGS_STORE": "s3", "CTIHUB_S3_ENDPOINT": "http://127.0.0.1:9000", "CTIHUB_S3_BUCKET": "calls"}


def settings(tmp_path: Path, **environ: str) -> Settings:
    return load_settings({"data_dir": str(tmp_path)}, environ=environ)


def test_defaults_are_wav_files_and_no_s3_store(tmp_path: Path) -> None:
    loaded = settings(tmp_path)
    assert (loaded.recording_format, loaded.recordings_store) == ("wav", "file")
    assert (loaded.s3_prefix, loaded.s3_region) == ("recordings/", "us-east-1")
    assert (loaded.s3_access_key_env, loaded.s3_secret_key_env) == ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    assert s3_storage_from_settings(loaded, {}) is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"CTIHUB_RECORDING_FORMAT": "mp3"}, "CTIHUB_RECORDING_FORMAT (--recording-format)"),
        ({"CTIHUB_RECORDINGS_STORE": "ftp"}, "CTIHUB_RECORDINGS_STORE"),
        ({"CTIHUB_RECORDINGS_STORE": "s3", "CTIHUB_S3_BUCKET": "calls"}, "CTIHUB_S3_ENDPOINT"),
        ({"CTIHUB_RECORDINGS_STORE": "s3", "CTIHUB_S3_ENDPOINT": "http://s3:9000"}, "CTIHUB_S3_BUCKET"),
        ({**S3, "CTIHUB_S3_ENDPOINT": "s3.example.com"}, "CTIHUB_S3_ENDPOINT"),
        ({**S3, "CTIHUB_S3_BUCKET": "Calls_2025"}, "CTIHUB_S3_BUCKET"),
        ({**S3, "CTIHUB_S3_PREFIX": "a//b"}, "CTIHUB_S3_PREFIX"),
        ({**S3, "CTIHUB_S3_REGION": "EU West"}, "CTIHUB_S3_REGION"),
        ({**S3, "CTIHUB_S3_ACCESS_KEY_ENV": "not a name"}, "CTIHUB_S3_ACCESS_KEY_ENV"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(tmp_path: Path, environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **environ)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_the_s3_store_takes_its_keys_from_the_named_variables(tmp_path: Path) -> None:
    loaded = settings(
        tmp_path, **S3, CTIHUB_RECORDING_FORMAT="FLAC", CTIHUB_S3_PREFIX="/hub-1/calls/",
        CTIHUB_S3_ACCESS_KEY_ENV="REC_KEY", CTIHUB_S3_SECRET_KEY_ENV="REC_SECRET",
    )
    assert loaded.recording_format == "flac" and loaded.s3_prefix == "hub-1/calls/"
    objects = s3_storage_from_settings(loaded, {"REC_KEY": "k", "REC_SECRET": "s"})
    assert objects is not None and objects.bucket == "calls" and objects.prefix == "hub-1/calls/"
    assert objects.key_for("2025/03/01/rec_1.flac") == "hub-1/calls/2025/03/01/rec_1.flac"
    with pytest.raises(ValueError):
        objects.key_for("../escape.wav")
    with pytest.raises(ConfigError, match="CTIHUB_S3_SECRET_KEY_ENV .*REC_SECRET is not set"):
        s3_storage_from_settings(loaded, {"REC_KEY": "k"})
    # Neither variable: boto3 finds credentials its own way (profile, instance role).
    assert s3_storage_from_settings(loaded, {}) is not None
