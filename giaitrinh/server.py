"""Serving the app: one process (waitress) or several (gunicorn), each with its scheduler.

One process is what a ward needs and what ``make run`` starts. A city runs
``--workers N``: gunicorn forks N worker processes, each builds its own app (and so
its own database pool: connections are never shared across a fork) and starts its
own timer scheduler after the fork. The schedulers coordinate through the jobs
table (leases, SKIP LOCKED) on PostgreSQL; on SQLite only one of them holds the
file lock and sweeps.
"""
from __future__ import annotations

import gc
import logging

from .config import Settings

log = logging.getLogger(__name__)

# Allocations between two collections of the youngest generation (Python's default: 700).
YOUNG_COLLECTION_EVERY = 10_000


def settle_heap() -> None:
    """Once a serving process is up: leave what start-up built to itself, and collect less often.

    Imports, the parsed specs, SQLAlchemy's mappers and compiled statements are hundreds of
    thousands of objects that live as long as the process; every full collection walked them
    all again (14 of them, 114 ms each, in a burst of 3,000 timers: 17% of its time). Frozen,
    the collector never looks at them again. A firing or a page allocates tens of thousands of
    short-lived objects, most of them freed by reference counting; collecting the young
    generation every 10,000 allocations instead of every 700 still frees the cycles a loaded
    workflow leaves (its tasks point back at it) within one use case, at a fraction of the
    passes. ``giaitrinh serve`` calls this once per process, after its app is built and before
    it takes requests (in each worker, after the fork: nothing is shared across it). The national
    holidays are computed first (``calendar.warm_up``): no first request pays for them, and they
    are frozen with the rest.
    """
    from .engine import calendar, clock

    calendar.warm_up(calendar.local_date(clock.now()))  # frozen with the rest of start-up
    gc.collect()  # what start-up left behind is freed, not frozen
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


def run_single(settings: Settings, host: str, port: int, threads: int, scheduler: bool) -> None:
    from waitress import serve

    from .engine import timers
    from .engine.services import documents
    from .web import create_app

    app = create_app(settings, boot_engine=False)
    if scheduler:
        timers.start_scheduler()
    documents.start_background_rendering()
    from .web.uploads import LARGEST_BODY

    settle_heap()

    serve(app, host=host, port=port, threads=threads, ident="giaitrinh",
          max_request_body_size=max(settings.max_body_bytes * 2, LARGEST_BODY))


def run_workers(settings: Settings, host: str, port: int, workers: int, threads: int, scheduler: bool,
                timeout: int = 60) -> None:
    from gunicorn.app.base import BaseApplication

    from .engine import db

    db.get_engine().dispose()  # no connection of the master's may be inherited by a worker

    def post_worker_init(worker) -> None:
        from .engine.services import documents

        documents.start_background_rendering()
        if scheduler:
            from .engine import timers

            timers.start_scheduler()
        settle_heap()

    def worker_exit(server, worker) -> None:
        from .engine import timers

        timers.stop_scheduler()

    class GiaiTrinh(BaseApplication):
        def load_config(self):
            options = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "timeout": timeout,
                "graceful_timeout": 30,
                "keepalive": 5,
                "preload_app": False,  # each worker opens its own database pool after the fork
                "limit_request_line": 8190,
                "accesslog": "-",
                "proc_name": "giaitrinh",
                "post_worker_init": post_worker_init,
                "worker_exit": worker_exit,
                "forwarded_allow_ips": "127.0.0.1,::1",
                # several servers may run on one machine (tests, a second database): no shared socket
                "control_socket_disable": True,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from .boot import boot
            from .web import create_app

            boot(settings)
            return create_app(settings, boot_engine=False)

    GiaiTrinh().run()
