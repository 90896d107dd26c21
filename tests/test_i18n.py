"""Every Vietnamese message of the UI has an English translation with the same placeholders."""
import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "giaitrinh/web/translations/en/LC_MESSAGES/messages.po"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _source_messages() -> set[str]:
    method_map = [("giaitrinh/web/**.py", "python"), ("giaitrinh/web/templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(ROOT), method_map, keywords=keywords):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_ui_message_is_translated_to_english():
    with CATALOGUE.open("rb") as f:
        catalogue = read_po(f)
    translated = {m.id: m.string for m in catalogue if m.id}
    messages = _source_messages()
    assert len(messages) > 150  # the extractor really read the templates
    missing = sorted(m for m in messages if not translated.get(m))
    assert not missing, f"{len(missing)} messages without English: {missing[:10]}"
    for message in messages:
        assert set(PLACEHOLDER.findall(message)) == set(PLACEHOLDER.findall(translated[message])), message
