"""Supervisors: overdue cases and open escalations."""
from flask import Blueprint

bp = Blueprint("supervise", __name__, url_prefix="/giam-sat")
