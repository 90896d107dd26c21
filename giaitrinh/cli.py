"""The ``giaitrinh`` command (API.md): serve, db upgrade, seed-demo, timers, deploy, migrate, report, audit."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .config import ConfigError, load_settings


def _boot():
    from .boot import boot

    try:
        return boot()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """GiảiTrình: tiếp nhận, xử lý, công khai yêu cầu giải trình."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Web processes. More than 1 runs gunicorn; every worker may run the scheduler.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Threads per process.")
@click.option("--no-scheduler", is_flag=True, help="Do not fire timers in this process.")
def serve(host: str, port: int, workers: int, threads: int, no_scheduler: bool) -> None:
    """Run the web server with its timer scheduler."""
    from . import server

    settings = _boot()
    click.echo(f"GiảiTrình: http://{host}:{port}/  (database {_safe_url(settings.database_url)}, "
               f"{workers} worker{'s' if workers > 1 else ''}{', dev clock' if settings.dev_clock else ''})")
    if workers == 1:
        server.run_single(settings, host, port, threads, scheduler=not no_scheduler)
    else:
        server.run_workers(settings, host, port, workers, threads, scheduler=not no_scheduler)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply the alembic migrations."""
    from . import migrate

    settings = load_settings()
    migrate.upgrade(settings.database_url, revision)
    click.echo(f"database at revision {revision}: {_safe_url(settings.database_url)}")


@main.command("seed-demo")
def seed_demo() -> None:
    """Create the demo units, accounts and about 30 requests at every stage (not in production)."""
    from . import demo

    settings = _boot()
    if settings.production:
        raise click.ClickException("seed-demo is refused when GIAITRINH_ENV=production")
    with click.progressbar(length=len(demo.PLAN), label="Tạo dữ liệu mẫu") as bar:
        created = demo.seed(progress=lambda: bar.update(1))
    click.echo(f"demo data ready ({created} new requests)")


@main.group()
def documents() -> None:
    """Documents of the cases (notices, minutes, explanations)."""


@documents.command("render")
def documents_render() -> None:
    """Render and store every issued document not yet rendered (otherwise done on first download)."""
    from .engine.services import documents as documents_service

    _boot()
    click.echo(f"rendered {documents_service.render_pending(limit=100_000)} documents")


@main.group()
def timers() -> None:
    """Timers (deadlines)."""


@timers.command("run-due")
def timers_run_due() -> None:
    """Fire every timer that is due now, then exit."""
    from .engine import timers as engine_timers

    _boot()
    fired = engine_timers.run_due()
    click.echo(f"fired {fired}")


@main.group()
def mail() -> None:
    """The email outbox (notices to citizens and officials)."""


@mail.command("send-due")
def mail_send_due() -> None:
    """Send every queued message that is due now (the scheduler of `serve` does this itself), then exit."""
    from .engine import mail as engine_mail

    _boot()
    sent = engine_mail.deliver_due()
    click.echo(f"sent {sent} ({engine_mail.config().backend})")


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "username", default=None, help="Designer account recorded as the deployer.")
def deploy(path: Path, username: str | None) -> None:
    """Validate and deploy a BPMN file (forms are read from forms/ beside it)."""
    from .engine import accounts
    from .engine import db as engine_db
    from .engine.definitions import InvalidDefinition
    from .engine.services import definitions

    _boot()
    actor = accounts.Actor(username or "cli", "Command line", {"designer": frozenset({accounts.ALL_UNITS})})
    if username:
        with engine_db.read_only() as session:
            found = accounts.actor_by_username(session, username)
        if found is None:
            raise click.ClickException(f"unknown user {username}")
        actor = found
    try:
        result = definitions.upload_and_deploy(path, actor)
    except InvalidDefinition as exc:
        for problem in exc.problems:
            where = ":".join(str(x) for x in (path, problem.line) if x)
            click.echo(f"{where}: {problem.element_id or ''} {problem.message}", err=True)
        sys.exit(1)
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"deployed {result['key']} version {result['version']} ({result['sha256'][:12]})"
               + (" (unchanged)" if result["existing"] else ""))


def _designer(username: str | None):
    from .engine import accounts
    from .engine import db as engine_db

    if not username:
        return accounts.Actor("cli", "Command line", {"designer": frozenset({accounts.ALL_UNITS})})
    with engine_db.read_only() as session:
        found = accounts.actor_by_username(session, username)
    if found is None:
        raise click.ClickException(f"unknown user {username}")
    return found


@main.command()
@click.argument("from_id", type=int)
@click.argument("to_id", type=int)
@click.option("--run", is_flag=True, help="Migrate for real (without it: a dry run that changes nothing).")
@click.option("--as", "username", default=None, help="Designer account recorded in the audit trail.")
def migrate(from_id: int, to_id: int, run: bool, username: str | None) -> None:
    """Move the open requests of definition FROM_ID to definition TO_ID (a deployed version of the same process)."""
    from .engine.errors import ServiceError
    from .engine.services import definitions

    _boot()
    try:
        result = definitions.migrate_instances(from_id, to_id, not run, _designer(username))
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    for item in result["items"]:
        verdict = "migrated" if item.get("migrated") else ("ok" if item["ok"] else "REFUSED")
        click.echo(f"{item['code']}\t{verdict}\t{','.join(item['active_steps'])}\t{'; '.join(item['problems'])}")
    click.echo(f"{'migrated' if run else 'dry run'}: {result['ok']}/{result['total']} can move, "
               f"{result['migrated']} moved (v{result['from']['version']} -> v{result['to']['version']})")


@main.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain and name the first event that was altered or removed."""
    from .engine import audit as engine_audit
    from .engine import db as engine_db

    _boot()
    with engine_db.read_only() as session:
        result = engine_audit.verify(session)
    if result.ok:
        click.echo(f"audit trail intact: {result.checked} events")
        return
    where = f"event {result.first_bad_id}" if result.first_bad_id else "end of trail"
    click.echo(f"audit trail BROKEN at {where}: {result.problem} ({result.checked} events verified before it)", err=True)
    sys.exit(2)


@main.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
def backup(target: Path) -> None:
    """Back up the database to TARGET (SQLite copy or pg_dump), checked."""
    from . import backup as backups

    settings = load_settings()
    try:
        backups.backup(settings.database_url, target)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backup written and checked: {target}")


@main.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def restore(source: Path, yes: bool) -> None:
    """Replace the database with the backup SOURCE, then verify the audit chain. Stop the servers first."""
    from . import backup as backups
    from .engine import audit as engine_audit
    from .engine import db as engine_db

    settings = load_settings()
    if not yes:
        click.confirm(f"Replace everything in {_safe_url(settings.database_url)} with {source}?", abort=True)
    try:
        backups.restore(settings.database_url, source)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    _boot()
    with engine_db.read_only() as session:
        result = engine_audit.verify(session)
    if not result.ok:
        click.echo(f"restored, but the audit trail is BROKEN at event {result.first_bad_id}: {result.problem}", err=True)
        sys.exit(2)
    click.echo(f"restored from {source}; audit trail intact ({result.checked} events)")


@main.group()
def retention() -> None:
    """Erasing personal data of closed cases after the retention period."""


@retention.command("purge")
@click.option("--days", type=click.IntRange(30, 36500), default=None,
              help="Retention period in days (default GIAITRINH_RETENTION_DAYS, else 1825).")
@click.option("--dry-run", is_flag=True, help="List what would be erased, erase nothing.")
def retention_purge(days: int | None, dry_run: bool) -> None:
    """Erase the personal data of closed cases older than the retention period."""
    from .engine.services import retention as retention_service

    _boot()
    codes = retention_service.due(days or retention_service.DEFAULT_DAYS)
    if dry_run:
        for code in codes:
            click.echo(code)
        click.echo(f"{len(codes)} closed cases past the retention period (nothing erased)")
        return
    erased = 0
    with click.progressbar(codes, label="Xóa thông tin cá nhân") as bar:
        for code in bar:
            erased += not retention_service.purge(code, actor="retention")["skipped"]
    click.echo(f"personal data erased from {erased} closed cases")


@main.group()
def report() -> None:
    """Reports: the monthly report to the level above."""


@report.command("monthly")
@click.option("--unit", required=True, help="Unit code; the report covers it and every unit below it.")
@click.option("--month", required=True, help="YYYY-MM (received in that month, Vietnam time).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write; .xlsx or .csv (the format follows the extension).")
def report_monthly(unit: str, month: str, out: Path) -> None:
    """Write the monthly report of a unit as XLSX or CSV (the same file the web page gives)."""
    from .engine import accounts
    from .engine.errors import ServiceError
    from .engine.services import reports

    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("xlsx", "csv"):
        raise click.BadParameter("the file must end in .xlsx or .csv", param_hint="--out")
    _boot()
    # The command line runs on the server, as its operator: every unit.
    actor = accounts.Actor("cli", "Command line", {"admin": frozenset({accounts.ALL_UNITS})})
    with click.progressbar(length=3, label=f"Báo cáo tháng {month} ({unit})", file=sys.stderr) as bar:
        try:
            report = reports.monthly(actor, unit, month)
            bar.update(1)
            content = reports.to_xlsx(report) if fmt == "xlsx" else reports.to_csv(report)
            bar.update(1)
        except ServiceError as exc:
            detail = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
            raise click.ClickException(exc.message + (f" ({detail})" if detail else "")) from None
        out.write_bytes(content)
        bar.update(1)
    click.echo(f"{out}: {report['received']} received, {report['explained_on_time']} explained on time, "
               f"{report['explained_late']} late, {report['open_at_end']} open at month end")


if __name__ == "__main__":
    main()
