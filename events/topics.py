"""Every Kafka topic and consumer-group name Comet uses, and nowhere else.

Names are prefixed with the settings' `topic_namespace`, so several installations or test
sessions can share one broker without seeing each other's events.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    namespace: str = "comet"

    # -- topics ------------------------------------------------------------------------------
    @property
    def webhooks(self) -> str:
        """Verified webhook deliveries, keyed by project id."""
        return f"{self.namespace}.webhooks"

    @property
    def run_commands(self) -> str:
        """Requests about a run (requested, cancel, retry, approve), keyed by run id."""
        return f"{self.namespace}.run-commands"

    @property
    def stage_results(self) -> str:
        """What workers report about attempts (started, finished, lost), keyed by run id."""
        return f"{self.namespace}.stage-results"

    @property
    def run_status(self) -> str:
        """Run and stage status changes, for observers (status reporters, analytics), keyed by run id."""
        return f"{self.namespace}.run-status"

    @property
    def dead_letters(self) -> str:
        """Undecodable events with the reason, keyed like the original."""
        return f"{self.namespace}.dead-letters"

    def dispatch(self, pool: str) -> str:
        """Stage attempts ready to run on workers of `pool`, keyed by run id."""
        return f"{self.namespace}.dispatch.{pool}"

    def core(self) -> list[str]:
        """Topics created at start-up by every process (pool topics are created on first use)."""
        return [
            self.webhooks,
            self.run_commands,
            self.stage_results,
            self.run_status,
            self.dead_letters,
        ]

    def orchestrator_inputs(self) -> list[str]:
        return [self.webhooks, self.run_commands, self.stage_results]

    # -- consumer groups ---------------------------------------------------------------------
    @property
    def orchestrator_group(self) -> str:
        return f"{self.namespace}.orchestrator"

    def worker_group(self, pool: str) -> str:
        return f"{self.namespace}.workers.{pool}"

    @property
    def status_reporter_group(self) -> str:
        return f"{self.namespace}.status-reporter"
