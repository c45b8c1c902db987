"""Every Kafka topic and consumer-group name Comet uses, and nowhere else.

Names are prefixed with the settings' `topic_namespace`, so several installations or test
sessions can share one broker without seeing each other's events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A pool's name as `.comet.yml` allows it (schemas/pipeline.py POOL_NAME).
_POOL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


_DAY_MS = 86_400_000

# Kafka retention per topic, set on every topic explicitly (never the broker's default), by its
# name without the namespace (`dispatch` for every pool's). TopicAdmin creates topics with it and
# alters an existing topic's config to match at start (docs/decisions/0020). The topics a restore
# catches up from (webhooks, run-commands, stage-results, run-status) keep 14 days: a backup is
# recoverable to the present for as long as they hold what followed it.
TOPIC_RETENTION: dict[str, dict[str, str]] = {
    "webhooks": {"cleanup.policy": "delete", "retention.ms": str(14 * _DAY_MS)},
    "run-commands": {"cleanup.policy": "delete", "retention.ms": str(14 * _DAY_MS)},
    "stage-results": {"cleanup.policy": "delete", "retention.ms": str(14 * _DAY_MS)},
    "run-status": {"cleanup.policy": "delete", "retention.ms": str(14 * _DAY_MS)},
    "dead-letters": {"cleanup.policy": "delete", "retention.ms": str(30 * _DAY_MS)},
    # A hand-off to workers only (Postgres is the work queue): a day is plenty.
    "dispatch": {"cleanup.policy": "delete", "retention.ms": str(1 * _DAY_MS)},
}


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

    def logical_names(self) -> list[str]:
        """The names an operator gives (`comet replay events --topic NAME`): topics without their
        namespace; `dispatch.POOL` stands for any pool's dispatch topic."""
        return [t.removeprefix(f"{self.namespace}.") for t in self.core()] + ["dispatch.POOL"]

    def by_logical_name(self, name: str) -> str | None:
        """The topic an operator's NAME stands for (`run-commands`, `dispatch.default`), or None."""
        if name in self.logical_names()[:-1]:
            return f"{self.namespace}.{name}"
        pool = name.removeprefix("dispatch.")
        if pool != name and _POOL.fullmatch(pool):
            return self.dispatch(pool)
        return None

    def retention(self, topic: str) -> dict[str, str]:
        """The Kafka config (`TOPIC_RETENTION`) of one of this namespace's topics ({} for others)."""
        if not topic.startswith(f"{self.namespace}."):
            return {}
        name = topic.removeprefix(f"{self.namespace}.")
        if name.startswith("dispatch."):
            name = "dispatch"
        return dict(TOPIC_RETENTION.get(name, {}))

    def dispatch_topics(self, existing: list[str]) -> list[str]:
        """The pools' dispatch topics among `existing` topic names."""
        prefix = f"{self.namespace}.dispatch."
        return sorted(t for t in existing if t.startswith(prefix))

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

    @property
    def notifier_group(self) -> str:
        """Outbound notifications (webhook and Slack integrations), in the orchestrators."""
        return f"{self.namespace}.notifier"

    def notifier_inputs(self) -> list[str]:
        return [self.run_status, self.stage_results]

    @property
    def analytics_group(self) -> str:
        """`comet analytics` (faust-streaming): its consumer group, also its faust app id, which
        prefixes its changelog topics (`<group>-runs-changelog`)."""
        return f"{self.namespace}.analytics"

    def analytics_inputs(self) -> list[str]:
        """What analytics reads: every topic keyed by run id that carries row-changing events
        (co-partitioned: the same run's events land on the same partition number in each)."""
        return [self.run_commands, self.run_status, self.stage_results]

    def owns_group(self, group: str) -> bool:
        """Whether `group` is one of this namespace's consumer groups (the ones above)."""
        return group in (
            self.orchestrator_group,
            self.status_reporter_group,
            self.notifier_group,
            self.analytics_group,
        ) or group.startswith(f"{self.namespace}.workers.")
