"""Vietnamese first, English second (Flask-Babel); catalogues compiled at start-up."""
from __future__ import annotations

import os
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import request, session
from flask_babel import Babel

from ..config import INSTANCE_DIR

LANGUAGES = ("vi", "en")
SOURCE = Path(__file__).parent / "translations"


def _compile() -> Path:
    """Compile the .po catalogues into the instance folder (the package may be read-only)."""
    target = INSTANCE_DIR / "translations"
    for po in SOURCE.glob("*/LC_MESSAGES/messages.po"):
        mo = target / po.relative_to(SOURCE).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as src:
            catalog = read_po(src)
        tmp = mo.with_suffix(f".{os.getpid()}.tmp")  # several workers may compile at once
        with tmp.open("wb") as out:
            write_mo(out, catalog)
        tmp.replace(mo)
    return target


def select_locale() -> str:
    wanted = request.args.get("lang")
    if wanted in LANGUAGES:
        session["lang"] = wanted
        return wanted
    if session.get("lang") in LANGUAGES:
        return session["lang"]
    return "vi"


def init_app(app) -> None:
    app.config["BABEL_DEFAULT_LOCALE"] = "vi"
    app.config["BABEL_DEFAULT_TIMEZONE"] = "Asia/Ho_Chi_Minh"
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(_compile())
    Babel(app, locale_selector=select_locale)
