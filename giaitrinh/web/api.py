"""The JSON API v1 of API.md: citizens, officials, supervisors, designers."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..engine import accounts, clock, db, timers
from ..engine.errors import RateLimited, ServiceError, Unauthenticated, ValidationFailed
from ..engine.services import calendar as calendar_service
from ..engine.services import definitions, requests, supervision, tasks
from ..engine.services import notifications as notification_service
from .auth import current_actor, require_actor
from .limits import limiter, sign_in_limit, submit_limit, track_limit
from .policy import policy
from .openapi import document

bp = Blueprint("api", __name__, url_prefix="/api/v1")
dev_bp = Blueprint("dev", __name__, url_prefix="/api/v1/dev")


class BadJson(ServiceError):
    code = "invalid_json"
    status = 400


def body(required: bool = True) -> Any:
    """The JSON body: 400 when it is not JSON, {} when optional and empty."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise BadJson("cần nội dung JSON (a JSON body is required)")
        return {}
    try:
        import json

        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJson(f"nội dung không phải JSON hợp lệ (invalid JSON: {exc})") from None


def body_object(required: bool = True) -> dict:
    data = body(required)
    if not isinstance(data, dict):
        raise ValidationFailed("nội dung phải là một đối tượng JSON (expected a JSON object)",
                               {"body": "Phải là một đối tượng JSON (object)."})
    return data


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValidationFailed(f"tham số {name} phải là số nguyên", {name: f"integer {low}..{high}"}) from None
    if not low <= number <= high:
        raise ValidationFailed(f"tham số {name} ngoài khoảng cho phép", {name: f"integer {low}..{high}"})
    return number


def _bool_arg(name: str) -> bool | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValidationFailed(f"tham số {name} phải là true hoặc false", {name: "true or false"})


def _str_arg(name: str, max_len: int = 100) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_len or "\x00" in value:
        raise ValidationFailed(f"tham số {name} không hợp lệ", {name: f"at most {max_len} characters"})
    return value


def _paging() -> dict:
    return {"page": _int_arg("page", 1, 1, 1_000_000), "per_page": _int_arg("per_page", 50, 1, 500)}


def _token() -> str | None:
    return request.headers.get("X-Request-Token") or None


# -- officials: sign in --------------------------------------------------------------


@bp.post("/auth/token")
@policy("public")
@limiter.shared_limit(sign_in_limit, scope="sign-in")
def issue_token():
    data = body_object()
    fields = {k: "Bắt buộc (required string)." for k in ("username", "password")
              if not isinstance(data.get(k), str) or not data.get(k)}
    if fields:
        raise ValidationFailed("thiếu tên đăng nhập hoặc mật khẩu", fields)
    try:
        user_id = accounts.sign_in(data["username"][:64], data["password"][:256])
    except accounts.SignInRefused as refused:
        if refused.locked_until is not None:
            raise RateLimited("tài khoản tạm khóa do đăng nhập sai nhiều lần (account locked)",
                              retry_after=refused.locked_until) from None
        raise Unauthenticated("sai tên đăng nhập hoặc mật khẩu (wrong username or password)") from None
    with db.transaction() as session:
        secret, row = accounts.issue_token(session, session.get(accounts.User, user_id))
        expires = row.expires_at
    return jsonify({"token": secret, "expires_at": _iso(expires)}), 201


@bp.delete("/auth/token")
@policy("official")
def revoke_token():
    """Sign out this API client: its bearer token stops working at once."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        raise Unauthenticated("cần mã truy cập (bearer token required)")
    with db.transaction() as session:
        accounts.revoke_token(session, header[7:].strip())
    return "", 204


def _iso(value):
    from ..engine.services._common import iso
    return iso(value)


# -- citizens and the public ------------------------------------------------------------


@bp.post("/requests")
@policy("public")
@limiter.shared_limit(submit_limit, scope="submission")
def submit_request():
    result = requests.submit(body_object(), actor=current_actor())
    return jsonify(result), 201


@bp.get("/requests/<code>")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def get_request(code: str):
    return jsonify(requests.view(code[:32], _token(), current_actor()))


@bp.post("/requests/<code>/withdraw")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def withdraw(code: str):
    data = body_object(required=False)
    return jsonify(requests.withdraw(code[:32], _token(), data.get("reason"), current_actor()))


@bp.post("/requests/<code>/info")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def provide_info(code: str):
    data = body_object()
    return jsonify(requests.provide_info(code[:32], _token(), data.get("content"), current_actor()))


@bp.post("/requests/<code>/rating")
@policy("token")
@limiter.shared_limit(track_limit, scope="tracking")
def rate(code: str):
    data = body_object()
    return jsonify(requests.rate(code[:32], _token(), data.get("score"), data.get("comment"))), 201


@bp.get("/published")
@policy("public")
def published():
    return jsonify(requests.search_published(_str_arg("q", 500), _str_arg("unit", 32), **_paging()))


@bp.get("/published/<code>")
@policy("public")
def published_one(code: str):
    return jsonify(requests.published(code[:32]))


# -- officials -----------------------------------------------------------------------------


@bp.get("/tasks")
@policy("official")
def list_tasks():
    actor = require_actor()
    return jsonify(tasks.list_tasks(actor, scope=_str_arg("scope", 10) or "unit", request_code=_str_arg("request", 32),
                                    step=_str_arg("step", 64), overdue=_bool_arg("overdue"), **_paging()))


@bp.get("/tasks/<task_id>")
@policy("official")
def get_task(task_id: str):
    return jsonify(tasks.get_task(task_id, require_actor()))


@bp.post("/tasks/<task_id>/claim")
@policy("official")
def claim(task_id: str):
    return jsonify(tasks.claim(task_id, require_actor()))


@bp.post("/tasks/<task_id>/complete")
@policy("official")
def complete(task_id: str):
    actor = require_actor()
    data = body_object()
    if "data" not in data:
        raise ValidationFailed("thiếu dữ liệu biểu mẫu", {"data": "Bắt buộc: {\"data\": {...}}"})
    return jsonify(tasks.complete(task_id, data["data"], actor))


# -- supervisors ---------------------------------------------------------------------------


@bp.get("/escalations")
@policy("official")
def escalations():
    return jsonify(supervision.list_escalations(require_actor(), open_only=_bool_arg("open"),
                                                unit=_str_arg("unit", 32), **_paging()))


@bp.get("/instances")
@policy("official")
def instances():
    criteria = supervision.parse_filter({name: request.args.get(name) for name in supervision.FILTER_FIELDS})
    return jsonify(supervision.list_instances(require_actor(), **criteria, **_paging()))


# -- supervisors: the console (branch supervise) ---------------------------------------------------


@bp.get("/instances/<code>/diagram")
@policy("official")
def instance_diagram(code: str):
    return jsonify(supervision.diagram(code[:32], require_actor()))


@bp.get("/instances/<code>/trail")
@policy("official")
def instance_trail(code: str):
    return jsonify({"items": supervision.trail(code[:32], require_actor())})


@bp.post("/instances/<code>/reassign")
@policy("official")
def reassign(code: str):
    data = body_object()
    return jsonify(supervision.reassign(code[:32], require_actor(), data.get("assignee"), data.get("note"),
                                        data.get("task_id")))


@bp.post("/instances/<code>/candidates")
@policy("official")
def add_candidate(code: str):
    data = body_object()
    return jsonify(supervision.add_candidate(code[:32], require_actor(), data.get("username"), data.get("note"),
                                             data.get("task_id"))), 201


@bp.post("/instances/<code>/urge")
@policy("official")
def urge(code: str):
    data = body_object()
    return jsonify(supervision.urge(code[:32], require_actor(), data.get("note"), data.get("task_id")))


@bp.post("/instances/<code>/incidents/<int:job_id>/retry")
@policy("official")
def retry_incident(code: str, job_id: int):
    data = body_object(required=False)
    supervision.retry_incident(code[:32], job_id, require_actor(), data.get("note"))
    return jsonify({"retried": job_id})


@bp.post("/instances/<code>/terminate")
@policy("official")
def terminate(code: str):
    data = body_object()
    return jsonify(supervision.terminate(code[:32], require_actor(), data.get("ground"), data.get("note")))


@bp.post("/instances/<code>/move")
@policy("role:admin")
def move_token(code: str):
    data = body_object()
    return jsonify(supervision.move_token(code[:32], require_actor(), data.get("to"), data.get("note")))


@bp.post("/instances/bulk")
@policy("official")
def bulk_instances():
    data = body_object()
    return jsonify(supervision.bulk(require_actor(), data.get("action"), data.get("codes"), data.get("note"),
                                    data.get("assignee")))


@bp.get("/saved-filters")
@policy("official")
def saved_filters():
    return jsonify({"items": supervision.list_filters(require_actor())})


@bp.post("/saved-filters")
@policy("official")
def save_filter():
    data = body_object()
    return jsonify(supervision.save_filter(require_actor(), data.get("name"), data.get("params"),
                                           data.get("shared_with_role"))), 201


@bp.delete("/saved-filters/<int:filter_id>")
@policy("official")
def delete_filter(filter_id: int):
    supervision.delete_filter(require_actor(), filter_id)
    return "", 204


@bp.get("/dashboard")
@policy("official")
def supervision_dashboard():
    return jsonify(supervision.dashboard(require_actor(), unit=_str_arg("unit", 32)))


@bp.get("/heatmap")
@policy("official")
def heatmap():
    definition = _str_arg("definition", 12)
    if definition is not None and not definition.isdigit():
        raise ValidationFailed("tham số definition phải là số nguyên", {"definition": "integer"})
    return jsonify(supervision.heatmap(require_actor(), key=_str_arg("key", 64),
                                       definition_id=int(definition) if definition else None,
                                       unit=_str_arg("unit", 32)))


@bp.put("/settings/stuck-inactive-days")
@policy("role:admin")
def set_inactive_days():
    data = body_object()
    return jsonify({"days": supervision.set_inactive_days(require_actor(), data.get("days"))})


@bp.post("/instances/<code>/suspend")
@policy("official")
def suspend(code: str):
    data = body_object()
    return jsonify(supervision.suspend(code[:32], require_actor(), data.get("ground"), data.get("note")))


@bp.post("/instances/<code>/resume")
@policy("official")
def resume(code: str):
    data = body_object(required=False)
    return jsonify(supervision.resume(code[:32], require_actor(), data.get("note")))


# -- designers and administrators -----------------------------------------------------------


@bp.get("/definitions")
@policy("role:designer")
def list_definitions():
    return jsonify(definitions.list_definitions(require_actor()))


def _bpmn_body() -> tuple[bytes, dict | None]:
    """The BPMN of an upload: XML as the body, a multipart ``file``, or JSON ``{"bpmn", "forms"?}``
    (what the modeler sends: the diagram with the forms edited beside it)."""
    if request.mimetype == "application/json":
        data = body_object()
        if not isinstance(data.get("bpmn"), str) or not data["bpmn"].strip():
            raise ValidationFailed("cần nội dung BPMN (a BPMN document is required)", {"bpmn": "BPMN 2.0 XML text"})
        forms = data.get("forms")
        if forms is not None and not isinstance(forms, dict):
            raise ValidationFailed("biểu mẫu không hợp lệ", {"forms": "an object: form file name -> JSON Schema"})
        return data["bpmn"].encode("utf-8"), forms
    if request.files.get("file") is not None:
        xml = request.files["file"].read()
    else:
        xml = request.get_data()
    if not xml:
        raise ValidationFailed("cần tệp BPMN (a BPMN document is required)", {"file": "BPMN 2.0 XML"})
    return xml, None


def _forms_dir():
    from ..config import PROCESSES_DIR
    return PROCESSES_DIR / "forms"


@bp.post("/definitions")
@policy("role:designer")
def upload_definition():
    actor = require_actor()
    xml, forms = _bpmn_body()
    result = definitions.upload(xml, actor, forms_dir=_forms_dir(), forms=forms)
    return jsonify(result), 200 if result.get("existing") else 201


@bp.post("/definitions/validate")
@policy("role:designer")
def validate_definition():
    actor = require_actor()
    xml, forms = _bpmn_body()
    return jsonify(definitions.validate(xml, actor, forms=forms, forms_dir=_forms_dir()))


@bp.get("/definitions/<int:definition_id>")
@policy("role:designer")
def get_definition(definition_id: int):
    return jsonify(definitions.get_definition(definition_id, require_actor()))


@bp.get("/definitions/<int:definition_id>/bpmn")
@policy("role:designer")
def definition_bpmn(definition_id: int):
    found = definitions.bpmn(definition_id, require_actor())
    response = current_app.response_class(found["bpmn"], mimetype="application/xml")
    if _bool_arg("download"):
        response.headers["Content-Disposition"] = f'attachment; filename="{found["key"]}-v{found["version"]}.bpmn"'
    return response


@bp.post("/definitions/<int:definition_id>/deploy")
@policy("role:designer")
def deploy_definition(definition_id: int):
    return jsonify(definitions.deploy(definition_id, require_actor()))


@bp.post("/definitions/<int:definition_id>/migrate")
@policy("role:designer")
def migrate_definition(definition_id: int):
    data = body_object()
    fields = {}
    if not isinstance(data.get("to"), int) or isinstance(data.get("to"), bool):
        fields["to"] = "the id of the version to move to (integer)"
    if not isinstance(data.get("dry_run", True), bool):
        fields["dry_run"] = "true or false"
    codes = data.get("codes")
    if codes is not None and (not isinstance(codes, list) or not all(isinstance(c, str) and len(c) <= 32 for c in codes)):
        fields["codes"] = "a list of request codes"
    if fields:
        raise ValidationFailed("yêu cầu chuyển phiên bản không hợp lệ", fields)
    return jsonify(definitions.migrate_instances(definition_id, data["to"], data.get("dry_run", True),
                                                 require_actor(), codes=codes))


@bp.post("/forms/validate")
@policy("role:designer")
def validate_form():
    data = body_object()
    if "schema" not in data:
        raise ValidationFailed("thiếu biểu mẫu", {"schema": "the JSON Schema of a task form"})
    return jsonify(definitions.check_form(data["schema"], require_actor()))


@bp.get("/calendar")
@policy("public")
def calendar_month():
    month = _str_arg("month", 7) or clock.now().strftime("%Y-%m")
    try:
        year, number = (int(x) for x in month.split("-"))
        if not (2000 <= year <= 2100 and 1 <= number <= 12):
            raise ValueError
    except ValueError:
        raise ValidationFailed("tháng không hợp lệ", {"month": "YYYY-MM"}) from None
    return jsonify({"month": month, "days": calendar_service.month(year, number),
                    "overrides": calendar_service.overrides()})


@bp.put("/calendar/<day>")
@policy("role:admin")
def calendar_set(day: str):
    data = body_object()
    return jsonify(calendar_service.set_day(require_actor(), day, data.get("kind"), data.get("note") or ""))


@bp.delete("/calendar/<day>")
@policy("role:admin")
def calendar_remove(day: str):
    calendar_service.remove_day(require_actor(), day)
    return "", 204


@bp.get("/openapi.json")
@policy("public")
def openapi():
    return jsonify(document(dev_clock=current_app.config["GIAITRINH"].dev_clock))


# -- officials' notifications (branch notify) ---------------------------------------------------


@bp.get("/notifications")
@policy("official")
def notifications_list():
    unread = _bool_arg("unread") is True
    return jsonify(notification_service.list_for(require_actor(), unread_only=unread, **_paging()))


@bp.post("/notifications/read")
@policy("official")
def notifications_read():
    data = body_object(required=False)
    return jsonify({"marked": notification_service.mark_read(require_actor(), data.get("ids"))})


# -- demo and test time -----------------------------------------------------------------------


@dev_bp.get("/clock")
@policy("dev")
def get_clock():
    return jsonify({"now": _iso(clock.now())})


@dev_bp.post("/clock")
@policy("dev")
def move_clock():
    data = body_object()
    if not isinstance(data.get("now"), str):
        raise ValidationFailed("thiếu thời điểm", {"now": "ISO 8601 date-time with offset"})
    when = clock.parse_instant(data["now"])
    if when < clock.now() - timedelta(seconds=1):
        raise clock.ClockError(f"the clock cannot move back: it is already {_iso(clock.now())}")
    current = clock.get_clock()
    if hasattr(current, "set"):
        current.set(when)
    fired = timers.run_due(when)
    return jsonify({"now": _iso(clock.now()), "fired": fired})
