"""Comet processes as real subprocesses, for tests that kill, pause and restart them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMET = str(Path(sys.executable).with_name("comet"))


@dataclass
class CometProcess:
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> CometProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen([COMET, *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        with_suppressed = self.proc
        with_suppressed.send_signal(signal.SIGCONT)
        with_suppressed.terminate()
        try:
            return with_suppressed.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with_suppressed.kill()
            return with_suppressed.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def process_env(common: dict[str, Any], **extra: object) -> dict[str, str]:
    """The environment for a Comet subprocess: the test's database and namespace, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMET_")}
    for key, value in {**common, **extra}.items():
        env[f"COMET_{key.upper()}"] = str(value)
    env.setdefault("COMET_LOG_FORMAT", "json")
    return env
