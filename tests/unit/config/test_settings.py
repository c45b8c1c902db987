"""`config/settings.py`: the run engine's linger (decision 0033) read as a duration."""

from __future__ import annotations

import pytest

from config.settings import OrchestratorSettings, SettingsError, load

DB = "postgresql+asyncpg://comet:x@127.0.0.1:5432/comet"


def test_the_engine_lingers_three_milliseconds_unless_told_otherwise() -> None:
    assert load(OrchestratorSettings, database_url=DB).engine_linger_s == pytest.approx(0.003)
    assert load(
        OrchestratorSettings, database_url=DB, engine_linger_s="10ms"
    ).engine_linger_s == pytest.approx(0.01)
    assert load(OrchestratorSettings, database_url=DB, engine_linger_s="0").engine_linger_s == 0


def test_a_negative_or_long_linger_is_refused_naming_the_setting() -> None:
    for value in ("-1", "5s"):
        with pytest.raises(SettingsError, match="COMET_ENGINE_LINGER_S"):
            load(OrchestratorSettings, database_url=DB, engine_linger_s=value)
