"""Citizens and the public: submit, follow, read published answers."""
from flask import Blueprint

bp = Blueprint("portal", __name__)


@bp.get("/")
def home():
    return "GiảiTrình"
