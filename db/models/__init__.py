"""Every table of Comet's database, importable from one place (Alembic reads `Base.metadata`)."""

from db.base import Base
from db.models.archives import EventArchive, RestorePoint
from db.models.deployments import Deployment, Environment
from db.models.events import AuditEntry, DeadLetter, InboxEntry, OutboxEvent
from db.models.idempotency import IdempotencyKey
from db.models.identity import ApiToken, AuthSession, OAuthHandoff, OAuthIdentity, User
from db.models.insights import InsightFact
from db.models.notifications import FlakyNotice, NotificationAttempt, NotificationDelivery
from db.models.projects import (
    Integration,
    Membership,
    PipelineDefinition,
    Project,
    ProjectSecret,
    WebhookSecret,
)
from db.models.rebuild import RebuildProgress
from db.models.runs import LogChunk, Run, Stage, StageAttempt, Worker
from db.models.testing import (
    CoverageReport,
    Schedule,
    ScheduleTick,
    TestCase,
    TestQuarantine,
    TestSuite,
)
from db.models.webhooks import CommitStatusReport, WebhookDelivery

__all__ = [
    "ApiToken",
    "AuditEntry",
    "AuthSession",
    "Base",
    "CommitStatusReport",
    "CoverageReport",
    "DeadLetter",
    "Deployment",
    "Environment",
    "EventArchive",
    "FlakyNotice",
    "IdempotencyKey",
    "InboxEntry",
    "InsightFact",
    "Integration",
    "LogChunk",
    "Membership",
    "NotificationAttempt",
    "NotificationDelivery",
    "OAuthHandoff",
    "OAuthIdentity",
    "OutboxEvent",
    "PipelineDefinition",
    "Project",
    "ProjectSecret",
    "RebuildProgress",
    "RestorePoint",
    "Run",
    "Schedule",
    "ScheduleTick",
    "Stage",
    "StageAttempt",
    "TestCase",
    "TestQuarantine",
    "TestSuite",
    "User",
    "WebhookDelivery",
    "WebhookSecret",
    "Worker",
]
