"""`comet orchestrator`: consumes webhook, run-command and stage-result topics in one consumer
group (instances share partitions), runs the lease reaper, the scheduler (fires due schedules)
with the pipeline-schedule sync, and an outbox relay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from config.settings import OrchestratorSettings
from db.crypto import SecretBox
from events.backbone import Backbone
from events.consumer import EventConsumer
from events.deadletters import DeadLetterSink
from events.retention import HistoryArchiver
from orchestrator.deployment_timer import DeploymentTimer
from orchestrator.handlers import RunEngine
from orchestrator.notifier import Notifier
from orchestrator.pipeline_schedules import PipelineScheduleSync
from orchestrator.reaper import LeaseReaper
from orchestrator.scheduler import Scheduler
from orchestrator.status_reporter import StatusReporter
from schemas.outbound import parse_allow
from workers.git import MirrorCache

log = structlog.get_logger(__name__)

# Commit statuses and notifications wait this long to gather a burst of run and stage changes into
# one batch: nobody waits on them to the millisecond, and the run engine shares their event loop.
SIDE_EFFECT_LINGER_S = 0.05


class OrchestratorService:
    def __init__(self, settings: OrchestratorSettings) -> None:
        self.settings = settings
        self.backbone = Backbone(settings, "orchestrator", relay_enabled=settings.relay)
        b = self.backbone
        git = MirrorCache(Path(settings.git_cache_dir))
        self.schedule_sync = PipelineScheduleSync(
            b.sessions, git, refresh_s=settings.schedule_refresh_s, scan_s=settings.schedule_scan_s
        )
        self.engine = RunEngine(
            b.sessions,
            b.topics,
            git,
            on_commit=b.wake_relay,
            untrusted_pool=settings.untrusted_pool,
            on_default_branch_planned=self.schedule_sync.follow_planned,
            approval_timeout_s=settings.deploy_approval_timeout_s,
        )
        self.deployment_timer = DeploymentTimer(
            b.sessions, b.topics, interval_s=settings.deploy_timer_interval_s, on_commit=b.wake_relay
        )
        self.scheduler = Scheduler(
            b.sessions, b.topics, interval_s=settings.scheduler_interval_s, on_commit=b.wake_relay
        )
        self.consumer = EventConsumer(
            name="orchestrator",
            topics=b.topics.orchestrator_inputs(),
            group_id=b.topics.orchestrator_group,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            handler=self.engine.handle,
            dead_letters=DeadLetterSink(b.sessions, b.topics, b.topics.orchestrator_group),
            instance_id=settings.instance_id,
            session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
            linger_s=settings.engine_linger_s,
        )
        self.reporter: StatusReporter | None = None
        self.reporter_consumer: EventConsumer | None = None
        self.notifier: Notifier | None = None
        self.notifier_consumer: EventConsumer | None = None
        if settings.secret_key is not None:
            self.reporter = StatusReporter(
                b.sessions,
                SecretBox(settings.secret_key.get_secret_value()),
                consumer_name=b.topics.status_reporter_group,
                public_url=settings.public_url,
            )
            self.reporter_consumer = EventConsumer(
                name="status-reporter",
                topics=[b.topics.run_status],
                group_id=b.topics.status_reporter_group,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                handler=self.reporter.handle,
                dead_letters=DeadLetterSink(b.sessions, b.topics, b.topics.status_reporter_group),
                instance_id=settings.instance_id,
                session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
                linger_s=SIDE_EFFECT_LINGER_S,
            )
            # Outbound notifications (docs/decisions/0024): their own group, so a slow receiver
            # or a notifier restart never holds back runs or commit statuses.
            self.notifier = Notifier(
                b.sessions,
                SecretBox(settings.secret_key.get_secret_value()),
                consumer_name=b.topics.notifier_group,
                public_url=settings.public_url,
                allow=parse_allow(settings.outbound_allow),
            )
            self.notifier_consumer = EventConsumer(
                name="notifier",
                topics=b.topics.notifier_inputs(),
                group_id=b.topics.notifier_group,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                handler=self.notifier.handle,
                dead_letters=DeadLetterSink(b.sessions, b.topics, b.topics.notifier_group),
                instance_id=settings.instance_id,
                session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
                linger_s=SIDE_EFFECT_LINGER_S,
            )
        self.reaper = LeaseReaper(
            b.sessions,
            b.topics,
            interval_s=settings.reaper_interval_s,
            outage_grace_s=settings.reaper_outage_grace_s,
            on_commit=b.wake_relay,
        )
        self.archiver = HistoryArchiver(
            b.sessions,
            settings.archive_dir,
            retention_s=settings.history_retention,
            interval_s=settings.archive_interval,
        )

    async def _ready_when_consuming(self) -> None:
        await self.consumer.started.wait()
        self.backbone.mark_ready("consuming")

    async def run(self, stop: asyncio.Event) -> None:
        if not await self.backbone.start(stop):
            await self.backbone.stop()
            return
        tasks = [
            asyncio.create_task(self.consumer.run(), name="orchestrator-consumer"),
            asyncio.create_task(self.reaper.run(), name="lease-reaper"),
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self.schedule_sync.run(), name="pipeline-schedules"),
            asyncio.create_task(self.archiver.run(), name="history-archiver"),
            asyncio.create_task(self.deployment_timer.run(), name="deployment-timer"),
        ]
        readiness = asyncio.create_task(self._ready_when_consuming(), name="readiness")
        if self.reporter is not None and self.reporter_consumer is not None:
            tasks.append(asyncio.create_task(self.reporter_consumer.run(), name="status-consumer"))
            tasks.append(asyncio.create_task(self.reporter.run(), name="status-sender"))
        if self.notifier is not None and self.notifier_consumer is not None:
            tasks.append(asyncio.create_task(self.notifier_consumer.run(), name="notifier-consumer"))
            tasks.append(asyncio.create_task(self.notifier.run(), name="notifier-sender"))
        log.info("orchestrator started", topics=self.backbone.topics.orchestrator_inputs())
        try:
            await stop.wait()
        finally:
            readiness.cancel()
            self.consumer.stop()
            self.reaper.stop()
            self.scheduler.stop()
            self.schedule_sync.stop()
            self.archiver.stop()
            self.deployment_timer.stop()
            if self.reporter is not None and self.reporter_consumer is not None:
                self.reporter_consumer.stop()
                self.reporter.stop()
            if self.notifier is not None and self.notifier_consumer is not None:
                self.notifier_consumer.stop()
                self.notifier.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.backbone.stop()
            log.info("orchestrator stopped")
