"""The `comet` command: one entry point for every process and operator task (CONTRACT §3).

Errors a user can cause (bad settings, bad arguments, unreachable services) end in one clear
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from config.logging import configure
from config.settings import (
    ApiSettings,
    CommonSettings,
    OrchestratorSettings,
    SettingsError,
    WorkerSettings,
    load,
    parse_labels,
)

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help="Comet CI/CD backend."
)
user_app = typer.Typer(no_args_is_help=True, help="Manage users.")
app.add_typer(user_app, name="user")
demo_app = typer.Typer(no_args_is_help=True, help="The demo that `make run` sets up.")
app.add_typer(demo_app, name="demo")
replay_app = typer.Typer(
    no_args_is_help=True, help="Replay webhooks and events; rebuild and verify state from the log."
)
app.add_typer(replay_app, name="replay")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: list, show, redrive, discard.")
app.add_typer(dlq_app, name="dlq")

S = TypeVar("S", bound=CommonSettings)


class CliError(Exception):
    """A failure to report as one line, with exit status 1."""


def _settings(cls: type[S], process: str, **overrides: object) -> S:
    settings = load(cls, **overrides)
    configure(process, level=settings.log_level, fmt=settings.log_format)
    return settings


@app.command()
def api() -> None:
    """Run the HTTP API (FastAPI on uvicorn)."""
    from api.main import serve

    serve(_settings(ApiSettings, "api"))


@app.command()
def orchestrator() -> None:
    """Run an orchestrator instance (several share the work by Kafka partitions)."""
    from cli.process import run_until_signalled
    from orchestrator.service import OrchestratorService

    service = OrchestratorService(_settings(OrchestratorSettings, "orchestrator"))
    run_until_signalled(service.run)


@app.command()
def worker(
    pool: Annotated[str | None, typer.Option(help="Pool whose stages this worker runs.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=256, help="Stages run at once.")] = None,
    labels: Annotated[str | None, typer.Option(help="Labels as k=v,k2=v2.")] = None,
) -> None:
    """Run a worker: claims and runs stages of its pool."""
    from cli.process import run_until_signalled
    from workers.service import WorkerService

    overrides: dict[str, object] = {}
    if pool is not None:
        from schemas.pipeline import POOL_NAME

        if not POOL_NAME.fullmatch(pool):
            raise CliError(
                f"--pool: {pool!r} is not a valid pool name (it names a Kafka topic: lowercase letters, "
                "digits, '_', '.', '-'; at most 63 characters)"
            )
        overrides["pool"] = pool
    if concurrency is not None:
        overrides["concurrency"] = concurrency
    if labels is not None:
        try:
            overrides["labels"] = parse_labels(labels)
        except ValueError as exc:
            raise CliError(f"--labels: {exc}") from None
    service = WorkerService(_settings(WorkerSettings, "worker", **overrides))
    run_until_signalled(service.run)


# -- insights (issue 13, docs/decisions/0025) -----------------------------------------------------
@app.command()
def analytics() -> None:
    """Run the faust-streaming insights process (off the critical path)."""
    from cli.analytics import run
    from config.settings import AnalyticsSettings

    run(_settings(AnalyticsSettings, "analytics"))


@app.command()
def migrate() -> None:
    """Apply database migrations (alembic upgrade head)."""
    from db.migrations import upgrade

    settings = _settings(CommonSettings, "migrate")
    upgrade(settings.database_url)
    typer.echo("database is at the latest migration")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Login e-mail.")],
    password: Annotated[str, typer.Option(help="Password (at least 12 characters).")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user a global admin.")] = False,
) -> None:
    """Create a user who can log in with e-mail and password."""
    from cli.users import create_user

    settings = _settings(CommonSettings, "cli")
    user_id = create_user(settings, email=email, password=password, admin=admin)
    typer.echo(f"created user {email} ({user_id}){' with admin rights' if admin else ''}")


@app.command()
def workers() -> None:
    """Workers, pools, slots and queue lag."""
    from cli.fleet import show

    show(_settings(CommonSettings, "cli"))


@app.command()
def schedules() -> None:
    """Every schedule of every project with its next fire time."""
    from cli.schedules import ScheduleListError, show

    try:
        show(_settings(CommonSettings, "cli"))
    except ScheduleListError as exc:
        raise CliError(str(exc)) from None


@app.command()
def schema() -> None:
    """Print the JSON Schema of `.comet.yml` (for editors)."""
    import json

    from schemas.pipeline import definition_json_schema

    typer.echo(json.dumps(definition_json_schema(), indent=2))


# -- comet replay webhooks ----------------------------------------------------------------------


@replay_app.command("webhooks")
def replay_webhooks(
    since: Annotated[str, typer.Option(help="Start of the window: ISO 8601, or how long ago (2h, 3d).")],
    until: Annotated[str | None, typer.Option(help="End of the window (default: now).")] = None,
    project: Annotated[str | None, typer.Option(help="Only this project (name or id).")] = None,
    provider: Annotated[str | None, typer.Option(help="Only github, gitlab or bitbucket.")] = None,
    outcome: Annotated[str | None, typer.Option(help="Only accepted, ignored or rejected ones.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Start new runs even for deliveries that produced theirs.")
    ] = False,
    rate: Annotated[
        float | None, typer.Option(min=0.1, help="Deliveries re-driven per second (default 200).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Only the summary, no line per delivery.")] = False,
) -> None:
    """Re-drive stored webhook deliveries of a time window through the live planning."""
    from cli.replay_webhooks import Options, ReplayWebhooksError, run

    options = Options(since, until, project, provider, outcome, dry_run, force, rate, quiet)
    try:
        run(_settings(OrchestratorSettings, "cli"), options)
    except ReplayWebhooksError as exc:
        raise CliError(str(exc)) from None


# -- comet replay events / comet replay run -----------------------------------------------------
@replay_app.command("events")
def replay_events(
    topic: Annotated[str, typer.Option(help="Topic without its namespace: run-commands, dispatch.POOL, …")],
    since: Annotated[str, typer.Option(help="Start: ISO 8601 or how long ago (2h, 3d).")],
    until: Annotated[str | None, typer.Option(help="End (default: now): ISO 8601 or how long ago.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count per event type; publish nothing.")
    ] = False,
) -> None:
    """Re-publish a window of the event history to its topic (consumers' inboxes make it harmless)."""
    from cli.replay_events import ReplayEventsError, replay

    settings = _settings(CommonSettings, "cli")
    try:
        typer.echo(replay(settings, topic=topic, since=since, until=until, dry_run=dry_run))
    except ReplayEventsError as exc:
        raise CliError(str(exc)) from None


@replay_app.command("run")
def replay_run(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON for machines instead of a table.")] = False,
) -> None:
    """The run's timeline, each input with the decision taken; flags any step today's decide() takes
    differently (exit 1 when one does)."""
    from cli.replay_run import ReplayRunError, show

    settings = _settings(CommonSettings, "cli")
    try:
        same = show(settings, run_id, as_json=as_json)
    except ReplayRunError as exc:
        raise CliError(str(exc)) from None
    if not same:
        raise typer.Exit(1)


# -- comet replay rebuild / verify --------------------------------------------------------------


@replay_app.command("rebuild")
def replay_rebuild(
    into: Annotated[str, typer.Option(help="URL of an empty, migrated database to rebuild into.")],
) -> None:
    """Rebuild runs, stages and attempts from this database's event history into another one."""
    from cli.replay_rebuild import RebuildCommandError, run_rebuild

    try:
        typer.echo(run_rebuild(_settings(CommonSettings, "cli"), into))
    except RebuildCommandError as exc:
        raise CliError(str(exc)) from None


@replay_app.command("verify")
def replay_verify(
    against: Annotated[str, typer.Option(help="URL of the database to compare this one with.")],
) -> None:
    """Compare the runs, stages and attempts of this database with another's: identical, or a diff."""
    from cli.replay_rebuild import RebuildCommandError, run_verify

    try:
        identical, lines = run_verify(_settings(CommonSettings, "cli"), against)
    except RebuildCommandError as exc:
        raise CliError(str(exc)) from None
    for line in lines:
        typer.echo(line)
    if not identical:
        raise typer.Exit(1)


# -- comet dlq ----------------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer group.")] = None,
    topic: Annotated[str | None, typer.Option(help="Only this topic.")] = None,
    kind: Annotated[str | None, typer.Option(help="undecodable or handler_failed.")] = None,
    state: Annotated[str | None, typer.Option(help="waiting, redriven or discarded.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many, newest first.")] = 100,
) -> None:
    """Dead letters, newest first, with their reason."""
    from cli.dlq import DlqError, list_letters
    from db.repositories.dead_letters import LetterKind, LetterState

    try:
        list_letters(
            _settings(CommonSettings, "cli"),
            consumer=consumer,
            topic=topic,
            kind=None if kind is None else LetterKind(kind),
            state=None if state is None else LetterState(state),
            limit=limit,
        )
    except ValueError:
        raise CliError(
            "--kind is undecodable or handler_failed; --state is waiting, redriven or discarded"
        ) from None
    except DlqError as exc:
        raise CliError(str(exc)) from None


@dlq_app.command("show")
def dlq_show(letter_id: Annotated[str, typer.Argument(metavar="ID", help="The letter's id.")]) -> None:
    """One dead letter: where it came from, why, and its payload (decoded when it can be)."""
    from cli.dlq import DlqError, parse_id, show

    try:
        show(_settings(CommonSettings, "cli"), parse_id(letter_id))
    except DlqError as exc:
        raise CliError(str(exc)) from None


@dlq_app.command("redrive")
def dlq_redrive(
    letter_id: Annotated[str | None, typer.Option("--id", help="Redrive this letter.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Redrive every waiting letter, oldest first.")] = False,
    consumer: Annotated[str | None, typer.Option(help="With --all: only this consumer group's.")] = None,
) -> None:
    """Re-publish dead letters to their topics, through normal consumption (exactly once)."""
    from cli.dlq import DlqError, parse_id, redrive

    if (letter_id is None) == (not every):
        raise CliError("give exactly one of --id ID and --all")
    try:
        target = None if every else parse_id(letter_id or "")
        summary = redrive(_settings(CommonSettings, "cli"), letter_id=target, consumer=consumer)
    except DlqError as exc:
        raise CliError(str(exc)) from None
    if every:
        typer.echo(summary.line())


@dlq_app.command("discard")
def dlq_discard(letter_id: Annotated[str, typer.Argument(metavar="ID", help="The letter's id.")]) -> None:
    """Set a dead letter aside for good (it is kept, marked discarded with who and when)."""
    from cli.dlq import DlqError, discard, parse_id

    try:
        letter = discard(_settings(CommonSettings, "cli"), parse_id(letter_id))
    except DlqError as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"discarded {letter.id} ({letter.consumer}, {letter.kind}: {letter.reason[:100]})")


# -- comet backup / restore ---------------------------------------------------------------------


@app.command()
def backup(
    to: Annotated[Path, typer.Option("--to", help="A new (or empty) directory for the backup.")],
) -> None:
    """Back up the database (pg_dump, one snapshot) with the event log's offsets and a manifest."""
    from cli.backup import BackupError
    from cli.backup import backup as take

    try:
        manifest = take(_settings(CommonSettings, "cli"), to)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    size = sum(int(f["bytes"]) for f in manifest["files"])
    typer.echo(
        f"backup {manifest['backup_id']} written to {to}: schema {manifest['schema_revision']}, "
        f"{size:,} bytes, {sum(len(p) for p in manifest['kafka']['end_offsets'].values())} partition offsets"
    )


@app.command()
def restore(
    from_: Annotated[Path, typer.Option("--from", help="A directory `comet backup` wrote.")],
) -> None:
    """Restore a backup into the (fresh, empty) database of COMET_DATABASE_URL; then run
    `comet replay catch-up` to apply what happened after the backup."""
    from cli.backup import BackupError
    from cli.backup import restore as put_back

    try:
        checked = put_back(_settings(CommonSettings, "cli"), from_)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    m = checked.manifest
    typer.echo(
        f"restored backup {m['backup_id']} (taken {m['started_at']}, schema {m['schema_revision']}); "
        "next: `comet replay catch-up` applies what happened since"
    )


@replay_app.command("catch-up")
def replay_catch_up() -> None:
    """After `comet restore`: apply what the event log holds since the backup (start the Comet
    processes again afterwards)."""
    from cli.catchup import run
    from events.catchup import CatchUpError

    try:
        typer.echo(run(_settings(CommonSettings, "cli")))
    except CatchUpError as exc:
        raise CliError(str(exc)) from None


@demo_app.command("seed")
def demo_seed(
    repo: Annotated[Path, typer.Option(help="Where the demo git repository lives.")],
    credentials: Annotated[Path, typer.Option(help="File that keeps the demo login.")],
) -> None:
    """Create the demo admin, repository and project (idempotent)."""
    from cli.demo import seed

    typer.echo(seed(_settings(ApiSettings, "cli"), repo, credentials))


def main() -> None:
    from cli.memory import tune_malloc

    tune_malloc()
    try:
        app()
    except SettingsError as exc:
        print(f"comet: configuration error:\n{exc}", file=sys.stderr)
        sys.exit(2)
    except CliError as exc:
        print(f"comet: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        print(f"comet: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        # The last line of defence: one line for the person, the traceback only in a debug log.
        import structlog

        structlog.get_logger("comet").debug("stopped by an unexpected error", exc_info=exc)
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        print(
            f"comet: unexpected error: {type(exc).__name__}: {first[:300]} "
            "(COMET_LOG_LEVEL=debug logs the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
