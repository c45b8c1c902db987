"""The `comet` command ends every failure with one clear line and a non-zero exit."""

from __future__ import annotations

import pytest

from cli import main as cli_main


def _failing(exc: BaseException) -> object:
    def app() -> None:
        raise exc

    return app


def test_an_unexpected_error_is_one_line_naming_it_never_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_main, "app", _failing(RuntimeError("relation x does not exist\n[SQL: …]")))
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    err = capsys.readouterr().err
    assert exited.value.code == 1
    assert err.count("\n") == 1
    assert err.startswith("comet: unexpected error: RuntimeError: relation x does not exist")
    assert "Traceback" not in err


def test_a_cli_error_is_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_main, "app", _failing(cli_main.CliError("--labels: label 'x' is not key=value")))
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 1
    assert capsys.readouterr().err == "comet: --labels: label 'x' is not key=value\n"
