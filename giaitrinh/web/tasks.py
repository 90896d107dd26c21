"""Officials: the inbox and task forms."""
from flask import Blueprint

bp = Blueprint("tasks", __name__, url_prefix="/cong-viec")


@bp.get("/")
def inbox():
    return "inbox"
