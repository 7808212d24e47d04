"""Settings: the production secret rule, secret length, the development key, environment
variables and their bounds."""

from __future__ import annotations

import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.secret_box import FernetBox, new_key
from adapters.webhook_http import FakeGuard, FakeSender
from persistence.accounts.models import User
from persistence.database import make_engine, make_session_factory
from persistence.unit_of_work import UnitOfWork
from server import cli
from server.app import create_app
from server.settings import MIN_SECRET_BYTES, ConfigurationError, Settings
from services import webhooks
from services.clock import FrozenClock
from services.webhooks import WebhookConfig
from tests.helpers import TEST_SECRET


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting comes from the caller's environment or from a `.env` in the working directory."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _settings(tmp_path: Path, **values) -> Settings:
    return Settings(_env_file=None, var_dir=tmp_path / "var", **values)


class TestProductionSecret:
    def test_signing_key_refused_without_secret(self, tmp_path):
        settings = Settings(_env_file=None, env="production", var_dir=tmp_path)
        with pytest.raises(ConfigurationError):
            _ = settings.signing_key
        assert not (tmp_path / "jwt_secret").exists(), "production must not fall back to a generated key"

    def test_a_generated_key_on_disk_is_not_used_in_production(self, tmp_path):
        (tmp_path / "jwt_secret").write_text("k" * 64)
        with pytest.raises(ConfigurationError):
            _ = Settings(_env_file=None, env="production", var_dir=tmp_path).signing_key

    def test_create_app_refuses_to_start(self, tmp_path, restore_logging):
        settings = Settings(
            _env_file=None,
            env="production",
            var_dir=tmp_path,
            database_url=f"sqlite:///{tmp_path / 'charter.db'}",
            log_level="WARNING",
        )
        with pytest.raises(ConfigurationError):
            create_app(settings)

    def test_production_with_secret_from_environment(self, tmp_path, monkeypatch):
        monkeypatch.setenv("ENV", "production")
        monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
        settings = Settings(_env_file=None, var_dir=tmp_path)
        assert settings.env == "production"
        assert settings.signing_key == TEST_SECRET
        assert TEST_SECRET not in repr(settings)  # SecretStr keeps it out of logs


class TestSecretLength:
    @pytest.mark.parametrize("secret", ["", "short", "x" * (MIN_SECRET_BYTES - 1)])
    def test_short_secret_is_refused(self, tmp_path, secret):
        with pytest.raises(ValidationError, match="JWT_SECRET"):
            _settings(tmp_path, jwt_secret=secret)

    def test_short_secret_from_environment_is_refused(self, tmp_path, monkeypatch):
        monkeypatch.setenv("JWT_SECRET", "x" * 31)
        with pytest.raises(ValidationError):
            Settings(_env_file=None, var_dir=tmp_path)

    def test_length_counts_bytes_not_characters(self, tmp_path):
        with pytest.raises(ValidationError):
            _settings(tmp_path, jwt_secret="é" * 15)  # 15 characters, 30 bytes
        assert _settings(tmp_path, jwt_secret="é" * 16).signing_key == "é" * 16  # 32 bytes

    def test_32_bytes_is_enough(self, tmp_path):
        assert _settings(tmp_path, jwt_secret="x" * MIN_SECRET_BYTES).signing_key == "x" * MIN_SECRET_BYTES


class TestDevelopmentKey:
    def test_generated_once_private_and_reused(self, tmp_path):
        first = _settings(tmp_path, env="development")
        key = first.signing_key
        path = tmp_path / "var" / "jwt_secret"
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(key.encode()) >= MIN_SECRET_BYTES
        assert path.read_text().strip() == key
        assert first.signing_key == key
        assert _settings(tmp_path, env="development").signing_key == key

    def test_another_var_dir_gets_another_key(self, tmp_path):
        one = Settings(_env_file=None, env="development", var_dir=tmp_path / "one").signing_key
        two = Settings(_env_file=None, env="development", var_dir=tmp_path / "two").signing_key
        assert one != two

    def test_secret_takes_precedence_over_the_file(self, tmp_path):
        assert _settings(tmp_path, env="development").signing_key  # writes the file
        assert _settings(tmp_path, env="development", jwt_secret=TEST_SECRET).signing_key == TEST_SECRET


class TestEnvironmentVariables:
    def test_are_read(self, tmp_path, monkeypatch):
        monkeypatch.setenv("BCRYPT_ROUNDS", "5")
        monkeypatch.setenv("ACCESS_TOKEN_TTL_SECONDS", "60")
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
        settings = Settings(_env_file=None)
        assert settings.bcrypt_rounds == 5
        assert settings.access_token_ttl_seconds == 60
        assert settings.database_url == f"sqlite:///{tmp_path / 'x.db'}"
        assert settings.is_sqlite

    def test_defaults(self):
        settings = Settings(_env_file=None)
        assert settings.env == "development"
        assert settings.bcrypt_rounds == 12
        assert settings.access_token_ttl_seconds == 900

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("BCRYPT_ROUNDS", "3"),
            ("BCRYPT_ROUNDS", "32"),
            ("BCRYPT_ROUNDS", "many"),
            ("ACCESS_TOKEN_TTL_SECONDS", "29"),
            ("DB_POOL_SIZE", "0"),
            ("ENV", "staging"),
            ("LOG_LEVEL", "LOUD"),
        ],
    )
    def test_out_of_range_values_are_refused(self, monkeypatch, name, value):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings(_env_file=None)

    def test_env_file_is_read(self, tmp_path):
        env_file = tmp_path / "custom.env"
        env_file.write_text("BCRYPT_ROUNDS=6\nLOG_LEVEL=ERROR\n")
        settings = Settings(_env_file=env_file)
        assert settings.bcrypt_rounds == 6
        assert settings.log_level == "ERROR"

    def test_environment_beats_env_file(self, tmp_path, monkeypatch):
        env_file = tmp_path / "custom.env"
        env_file.write_text("BCRYPT_ROUNDS=6\n")
        monkeypatch.setenv("BCRYPT_ROUNDS", "7")
        assert Settings(_env_file=env_file).bcrypt_rounds == 7


class TestEncryptionKeys:
    """ENCRYPTION_KEYS (webhook signing secrets at rest): required in production, generated once
    under VAR_DIR in development, validated as Fernet keys; `charter rotate-encryption-key`."""

    def test_production_refuses_to_start_without_them(self, tmp_path, restore_logging):
        settings = Settings(
            _env_file=None,
            env="production",
            jwt_secret=TEST_SECRET,
            var_dir=tmp_path,
            database_url=f"sqlite:///{tmp_path / 'charter.db'}",
            log_level="WARNING",
        )
        with pytest.raises(ConfigurationError, match="ENCRYPTION_KEYS"):
            create_app(settings)
        assert not (tmp_path / "encryption_key").exists(), "production must not fall back to a generated key"

    def test_development_generates_one_key_once_private(self, tmp_path):
        first = _settings(tmp_path).encryption_key_list
        again = _settings(tmp_path).encryption_key_list
        assert first == again and len(first) == 1
        assert ((tmp_path / "var" / "encryption_key").stat().st_mode & 0o777) == 0o600
        FernetBox(first)  # a usable key

    def test_keys_are_read_in_order_and_checked(self, tmp_path):
        keys = [new_key(), new_key()]
        assert _settings(tmp_path, encryption_keys=f" {keys[0]} , {keys[1]} ").encryption_key_list == keys
        for bad in ("not a key!", "c2hvcnQ="):  # not base64; base64 of 5 bytes
            with pytest.raises(ConfigurationError, match="ENCRYPTION_KEYS"):
                _ = _settings(tmp_path, encryption_keys=bad).encryption_key_list

    def test_rotate_encryption_key_re_encrypts_stored_secrets(self, tmp_path, monkeypatch, capsys):
        old, newest = new_key(), new_key()
        url = f"sqlite:///{tmp_path / 'charter.db'}"
        cli.migrate(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        owner = uuid.uuid4()
        now = datetime.now(UTC)
        with UnitOfWork(factory) as uow:
            uow.users.add(
                User(
                    id=owner, email="k@example.com", display_name="K", password_hash="-", created_at=now, updated_at=now
                )
            )
            config = WebhookConfig(guard=FakeGuard(), sender=FakeSender(), box=FernetBox([old]))
            created = webhooks.create_endpoint(
                uow=uow,
                clock=FrozenClock(now),
                config=config,
                owner_id=owner,
                url="https://hooks.example.com/x",
                event_types=["task.created"],
            )
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
        monkeypatch.setenv("ENCRYPTION_KEYS", f"{newest},{old}")
        assert cli.main(["rotate-encryption-key"]) == 0
        assert "1 webhook endpoint" in capsys.readouterr().out
        with UnitOfWork(factory) as uow:
            row = uow.webhooks.endpoint_by_id(created.endpoint.id)
            assert FernetBox([newest]).decrypt(row.secret_encrypted) == created.secret
        monkeypatch.setenv("ENCRYPTION_KEYS", new_key())  # a key that made none of them
        assert cli.main(["rotate-encryption-key"]) == 1
        engine.dispose()
