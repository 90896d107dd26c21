"""The Flask app: one blueprint per audience, each calling engine services only."""
from __future__ import annotations

from flask import Flask

from ..config import Settings, load_settings


def create_app(settings: Settings | None = None, *, boot_engine: bool = True) -> Flask:
    """Build the app. ``boot_engine=False`` when the caller already initialised the engine (tests)."""
    if settings is None:
        settings = load_settings()
    if boot_engine:
        from ..boot import boot

        boot(settings)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_body_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.production,
        SESSION_COOKIE_NAME="giaitrinh_session",
        JSON_SORT_KEYS=False,
        GIAITRINH=settings,
    )
    if settings.proxy_count:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    from . import i18n
    i18n.init_app(app)

    from . import admin, api, auth, design, documents, errors, filters, labels, limits, policy, portal, security
    from . import supervise, tasks, uploads, vendor
    from . import open311, reports, reports_api  # noqa: F401 - reports_api adds its routes to api.bp
    filters.register(app)
    limits.init_app(app, settings)
    labels.register(app)
    errors.init_app(app)
    uploads.init_app(app)
    security.init_app(app)
    policy.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(portal.bp)
    app.register_blueprint(tasks.bp)
    app.register_blueprint(supervise.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(vendor.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(open311.bp)
    app.register_blueprint(design.bp)
    app.register_blueprint(documents.bp)
    from . import notifications
    notifications.init_app(app, settings)
    if settings.dev_clock:
        app.register_blueprint(api.dev_bp)

    @app.context_processor
    def _globals():
        from flask_babel import get_locale

        return {"actor": auth.current_actor(), "settings": settings, "get_locale": get_locale}

    # Globals rather than context: imported macros (macros.html) see them too.
    app.jinja_env.globals.update(csrf_token=security.csrf_token, stage_labels=labels.STAGES,
                                 stage_index=labels.stage_index)

    return app
