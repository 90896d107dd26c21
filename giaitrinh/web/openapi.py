"""The OpenAPI 3.1 document of API v1, served at /api/v1/openapi.json."""
from __future__ import annotations

from copy import deepcopy

from ..engine.services.requests import REQUEST_SCHEMA

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
        "problems": {"type": "array", "items": {"type": "object"}},
    }}},
}


def _err(*codes: int) -> dict:
    names = {400: "Not JSON", 401: "Not signed in", 403: "Forbidden", 404: "Unknown", 409: "Conflict",
             413: "Too large", 422: "Invalid content", 429: "Too many requests (rate limit or account lockout)"}
    return {str(c): {"description": names[c], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for c in codes}


def _ok(status: int = 200, schema: dict | None = None, description: str = "OK") -> dict:
    return {str(status): {"description": description,
                          "content": {"application/json": {"schema": schema or {"type": "object"}}}}}


def _body(schema: dict | None = None, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def _q(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string", "maxLength": 36}}


TOKEN_HEADER = {"name": "X-Request-Token", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "The secret token given at submission"}
PAGING = [_q("page", {"type": "integer", "minimum": 1}), _q("per_page", {"type": "integer", "minimum": 1, "maximum": 500})]
BEARER = [{"bearer": []}]
# The modeler's body: the diagram and the forms edited beside it (form file name -> JSON Schema).
DESIGN_BODY = {"type": "object", "required": ["bpmn"], "properties": {
    "bpmn": {"type": "string"}, "forms": {"type": "object", "additionalProperties": {"type": "object"}}}}
LIST = {"type": "object", "required": ["items", "total"],
        "properties": {"items": {"type": "array", "items": {"type": "object"}}, "total": {"type": "integer"}}}
# The search counts matches up to a cap (10,000): past it ``total`` is the cap and ``total_exact`` false.
PUBLISHED_LIST = {"type": "object", "required": ["items", "total", "total_exact"], "properties": {
    **LIST["properties"],
    "total": {"type": "integer", "description": "The number of matches, or the cap when total_exact is false"},
    "total_exact": {"type": "boolean", "description": "False: there are more than total matches"}}}


def document(dev_clock: bool = False) -> dict:
    request_schema = deepcopy(REQUEST_SCHEMA)
    paths = {
        "/api/v1/auth/token": {"post": {
            "summary": "Sign in as an official", "tags": ["officials"],
            "requestBody": _body({"type": "object", "required": ["username", "password"], "properties": {
                "username": {"type": "string"}, "password": {"type": "string"}}}),
            "responses": {**_ok(201, {"type": "object", "properties": {"token": {"type": "string"},
                                                                        "expires_at": {"type": "string"}}}),
                          **_err(400, 401, 422, 429)},
        }, "delete": {
            "summary": "Revoke the bearer token of this call (sign out)", "tags": ["officials"],
            "responses": {"204": {"description": "revoked"}, **_err(401)}}},
        "/api/v1/requests": {"post": {
            "summary": "Submit a request for explanation", "tags": ["citizens"],
            "requestBody": _body(request_schema),
            "responses": {**_ok(201, {"type": "object", "required": ["code", "token", "status", "received_at", "deadlines"]}),
                          **_err(400, 403, 404, 413, 422, 429)}}},
        "/api/v1/requests/{code}": {"get": {
            "summary": "Follow a request", "tags": ["citizens"], "parameters": [_path("code"), TOKEN_HEADER],
            "responses": {**_ok(), **_err(401, 403, 404, 429)}}},
        "/api/v1/requests/{code}/withdraw": {"post": {
            "summary": "Withdraw the whole request (art. 14)", "tags": ["citizens"], "parameters": [_path("code"), TOKEN_HEADER],
            "requestBody": _body({"type": "object", "properties": {"reason": {"type": "string", "maxLength": 5000}}}, False),
            "responses": {**_ok(), **_err(400, 404, 409, 422)}}},
        "/api/v1/requests/{code}/info": {"post": {
            "summary": "Provide the information reception asked for", "tags": ["citizens"],
            "parameters": [_path("code"), TOKEN_HEADER],
            "requestBody": _body({"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}}}),
            "responses": {**_ok(), **_err(400, 404, 409, 422)}}},
        "/api/v1/requests/{code}/rating": {"post": {
            "summary": "Rate the explanation", "tags": ["citizens"], "parameters": [_path("code"), TOKEN_HEADER],
            "requestBody": _body({"type": "object", "required": ["score"], "properties": {
                "score": {"type": "integer", "minimum": 1, "maximum": 5}, "comment": {"type": "string"}}}),
            "responses": {**_ok(201), **_err(400, 404, 409, 422)}}},
        "/api/v1/published": {"get": {
            "summary": "Search published explanations (case and diacritics ignored)", "tags": ["public"],
            "parameters": [_q("q", {"type": "string"}), _q("unit", {"type": "string"}), *PAGING],
            "responses": {**_ok(200, PUBLISHED_LIST), **_err(422)}}},
        "/api/v1/published/{code}": {"get": {
            "summary": "One published explanation", "tags": ["public"], "parameters": [_path("code")],
            "responses": {**_ok(), **_err(404)}}},
        "/api/v1/tasks": {"get": {
            "summary": "Inbox, sorted by urgency", "tags": ["officials"], "security": BEARER,
            "parameters": [_q("scope", {"type": "string", "enum": ["mine", "unit", "all"]}), _q("request", {"type": "string"}),
                           _q("step", {"type": "string"}), _q("overdue", {"type": "boolean"}), *PAGING],
            "responses": {**_ok(200, LIST), **_err(401, 403, 422)}}},
        "/api/v1/tasks/{id}": {"get": {
            "summary": "A task with its form (JSON Schema) and its request", "tags": ["officials"], "security": BEARER,
            "parameters": [_path("id")], "responses": {**_ok(), **_err(401, 403, 404)}}},
        "/api/v1/tasks/{id}/claim": {"post": {
            "summary": "Take a task", "tags": ["officials"], "security": BEARER, "parameters": [_path("id")],
            "responses": {**_ok(), **_err(401, 403, 404, 409)}}},
        "/api/v1/tasks/{id}/complete": {"post": {
            "summary": "Complete a task with its form data", "tags": ["officials"], "security": BEARER,
            "parameters": [_path("id")],
            "requestBody": _body({"type": "object", "required": ["data"], "properties": {"data": {"type": "object"}}}),
            "responses": {**_ok(200, {"type": "object", "required": ["request", "next_tasks"]}),
                          **_err(400, 401, 403, 404, 409, 422)}}},
        "/api/v1/escalations": {"get": {
            "summary": "Escalations of missed deadlines", "tags": ["supervisors"], "security": BEARER,
            "parameters": [_q("open", {"type": "boolean"}), _q("unit", {"type": "string"}), *PAGING],
            "responses": {**_ok(200, LIST), **_err(401, 403, 422)}}},
        "/api/v1/instances/{code}/suspend": {"post": {
            "summary": "Suspend (art. 14): the deadline clock pauses", "tags": ["supervisors"], "security": BEARER,
            "parameters": [_path("code")],
            "requestBody": _body({"type": "object", "required": ["ground"], "properties": {
                "ground": {"type": "string", "enum": ["requester_deceased", "lost_capacity", "unable"]},
                "note": {"type": "string"}}}),
            "responses": {**_ok(), **_err(400, 401, 403, 404, 409, 422)}}},
        "/api/v1/instances/{code}/resume": {"post": {
            "summary": "Resume: deadlines move by the time suspended", "tags": ["supervisors"], "security": BEARER,
            "parameters": [_path("code")], "requestBody": _body(None, False),
            "responses": {**_ok(), **_err(400, 401, 403, 404, 409, 422)}}},
        "/api/v1/definitions": {
            "get": {"summary": "Process versions", "tags": ["designers"], "security": BEARER,
                    "responses": {**_ok(200, LIST), **_err(401, 403)}},
            "post": {"summary": "Upload a BPMN version (validated)", "tags": ["designers"], "security": BEARER,
                     "requestBody": {"required": True, "content": {
                         "application/xml": {"schema": {"type": "string"}},
                         "application/json": {"schema": DESIGN_BODY},
                         "multipart/form-data": {"schema": {"type": "object", "properties": {
                             "file": {"type": "string", "format": "binary"}}}}}},
                     "responses": {**_ok(201), **_ok(200, description="Same content as an existing version"),
                                   **_err(400, 401, 403, 413, 422)}}},
        "/api/v1/definitions/{id}/deploy": {"post": {
            "summary": "Deploy a version for new requests", "tags": ["designers"], "security": BEARER,
            "parameters": [_path("id", {"type": "integer"})], "responses": {**_ok(), **_err(401, 403, 404, 409)}}},
        # -- design branch: process designers (versions, validation, migration, forms) --
        "/api/v1/definitions/validate": {"post": {
            "summary": "Every check an upload makes, nothing stored", "tags": ["designers"], "security": BEARER,
            "requestBody": {"required": True, "content": {
                "application/xml": {"schema": {"type": "string"}},
                "application/json": {"schema": DESIGN_BODY}}},
            "responses": {**_ok(200, {"type": "object", "required": ["valid", "problems", "warnings"]}),
                          **_err(400, 401, 403, 413, 422)}}},
        "/api/v1/definitions/{id}": {"get": {
            "summary": "A version: summary, user tasks, forms", "tags": ["designers"], "security": BEARER,
            "parameters": [_path("id", {"type": "integer"})], "responses": {**_ok(), **_err(401, 403, 404)}}},
        "/api/v1/definitions/{id}/bpmn": {"get": {
            "summary": "The BPMN text of a version (?download=true: as a file)", "tags": ["designers"],
            "security": BEARER, "parameters": [_path("id", {"type": "integer"}), _q("download", {"type": "boolean"})],
            "responses": {"200": {"description": "BPMN 2.0 XML", "content": {"application/xml": {"schema": {"type": "string"}}}},
                          **_err(401, 403, 404, 422)}}},
        "/api/v1/definitions/{id}/migrate": {"post": {
            "summary": "Move the open requests of this version to another (dry run by default)", "tags": ["designers"],
            "security": BEARER, "parameters": [_path("id", {"type": "integer"})],
            "requestBody": _body({"type": "object", "required": ["to"], "properties": {
                "to": {"type": "integer"}, "dry_run": {"type": "boolean", "default": True},
                "codes": {"type": "array", "items": {"type": "string"}}}}),
            "responses": {**_ok(200, {"type": "object", "required": ["dry_run", "items", "total", "ok", "migrated"]}),
                          **_err(400, 401, 403, 404, 409, 422)}}},
        "/api/v1/forms/validate": {"post": {
            "summary": "Check a task form (JSON Schema and the product's form rules)", "tags": ["designers"],
            "security": BEARER, "requestBody": _body({"type": "object", "required": ["schema"]}),
            "responses": {**_ok(200, {"type": "object", "required": ["valid", "problems"]}), **_err(400, 401, 403, 422)}}},
        # -- end of the design branch's block --
        "/api/v1/calendar": {"get": {
            "summary": "Working days of a month and the local overrides", "tags": ["administrators"],
            "parameters": [_q("month", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"})],
            "responses": {**_ok(), **_err(422)}}},
        "/api/v1/calendar/{day}": {
            "put": {"summary": "Declare an official day off or make-up working day", "tags": ["administrators"],
                    "security": BEARER, "parameters": [_path("day", {"type": "string", "format": "date"})],
                    "requestBody": _body({"type": "object", "required": ["kind"], "properties": {
                        "kind": {"type": "string", "enum": ["day_off", "working_day"]}, "note": {"type": "string"}}}),
                    "responses": {**_ok(), **_err(400, 401, 403, 422)}},
            "delete": {"summary": "Remove an override", "tags": ["administrators"], "security": BEARER,
                       "parameters": [_path("day", {"type": "string", "format": "date"})],
                       "responses": {"204": {"description": "Removed"}, **_err(401, 403, 404, 422)}}},
    }
    paths.update(_reports_and_open_data())
    # -- branch notify: officials' in-app notifications --
    paths.update({
        "/api/v1/notifications": {"get": {
            "summary": "My notifications (assignment, urging, escalation), newest first", "tags": ["officials"],
            "security": BEARER, "parameters": [_q("unread", {"type": "boolean"}, "only the unread ones"), *PAGING],
            "responses": {**_ok(200, {**LIST, "required": ["items", "total", "unread"]}), **_err(401, 403, 422)}}},
        "/api/v1/notifications/read": {"post": {
            "summary": "Mark some (ids) or all of my notifications read", "tags": ["officials"], "security": BEARER,
            "requestBody": _body({"type": "object", "properties": {"ids": {
                "type": "array", "maxItems": 500, "items": {"type": "integer", "minimum": 1, "maximum": 2147483647}}}},
                required=False),
            "responses": {**_ok(200, {"type": "object", "required": ["marked"], "properties": {
                "marked": {"type": "integer"}}}), **_err(400, 401, 403, 422)}}},
    })
    paths.update(_supervision_paths())
    # -- documents and attachments (branch documents) --
    def binary(*mimes: str) -> dict:
        return {"description": "The file, as an attachment (Content-Disposition: attachment)",
                "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in mimes}}

    docx, xlsx = ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    case_params = [_path("code", {"type": "string", "maxLength": 32}), TOKEN_HEADER]
    paths.update({
        "/api/v1/requests/{code}/documents": {"get": {
            "summary": "The case's documents (notices, minutes, explanation) with their sha256", "tags": ["citizens"],
            "parameters": case_params,
            "responses": {**_ok(200, {"type": "object", "required": ["items"], "properties": {"items": {
                "type": "array", "items": {"type": "object", "required": ["id", "kind", "issued_at", "sha256", "pdf_url"],
                                           "properties": {
                    "id": {"type": "integer"}, "kind": {"type": "string", "enum": [
                        "acceptance_notice", "refusal_notice", "redirection_notice", "extension_notice",
                        "suspension_notice", "resumption_notice", "termination_notice", "minutes", "explanation"]},
                    "symbol": {"type": "string"}, "issued_at": {"type": "string", "format": "date-time"},
                    "sha256": {"type": "string"}, "pdf_url": {"type": "string"}, "docx_url": {"type": "string"}}}}}}),
                **_err(401, 403, 404, 429)}}},
        "/api/v1/requests/{code}/documents/{document_id}/{fmt}": {"get": {
            "summary": "Download one document as PDF or DOCX (the stored bytes; their sha256 is in the list)",
            "tags": ["citizens"],
            "parameters": [*case_params, _path("document_id", {"type": "integer"}),
                           _path("fmt", {"type": "string", "enum": ["pdf", "docx"]})],
            "responses": {"200": binary("application/pdf", docx), **_err(401, 403, 404, 429)}}},
        "/api/v1/requests/{code}/attachments": {"get": {
            "summary": "Files attached to the case (evidence, signed scans)", "tags": ["citizens"],
            "parameters": case_params,
            "responses": {**_ok(200, {"type": "object", "required": ["items"], "properties": {"items": {
                "type": "array", "items": {"type": "object", "required": ["id", "kind", "filename", "sha256", "url"]}}}}),
                **_err(401, 403, 404, 429)}}, "post": {
            "summary": "Attach signed scans (PDF, JPEG, PNG, DOCX, XLSX by content; 10 MB each, 5 at most)",
            "tags": ["officials"], "security": BEARER, "parameters": [_path("code", {"type": "string", "maxLength": 32})],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary"}, "note": {"type": "string", "maxLength": 500}}}}}},
            "responses": {**_ok(201, {"type": "object", "required": ["items"]}),
                          **_err(400, 401, 403, 404, 413, 422)}}},
        "/api/v1/requests/{code}/attachments/{attachment_id}": {"get": {
            "summary": "Download one attached file", "tags": ["citizens"],
            "parameters": [*case_params, _path("attachment_id", {"type": "integer"})],
            "responses": {"200": binary("application/pdf", "image/jpeg", "image/png", docx, xlsx),
                          **_err(401, 403, 404, 429)}}},
    })
    if dev_clock:
        paths["/api/v1/dev/clock"] = {
            "get": {"summary": "The engine clock", "tags": ["dev"], "responses": _ok()},
            "post": {"summary": "Move the clock forward and fire due timers", "tags": ["dev"],
                     "requestBody": _body({"type": "object", "required": ["now"], "properties": {
                         "now": {"type": "string", "format": "date-time"}}}),
                     "responses": {**_ok(200, {"type": "object", "required": ["now", "fired"]}), **_err(400, 409, 422)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "GiảiTrình API", "version": "1.0.0",
                 "description": "Requests for explanation (Decree 59/2019/NĐ-CP): submit, follow, handle, publish."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


# -- reports and open data (branch reports) ------------------------------------------------------

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MONTHLY = {"type": "object", "required": [
    "unit", "month", "received", "accepted", "refused", "redirected", "explained_on_time", "explained_late",
    "open_at_end", "avg_working_days_to_acknowledge", "avg_days_to_explain", "satisfaction_avg",
    "satisfaction_distribution", "refused_by_ground", "extensions", "suspensions", "withdrawals", "breakdown",
    "definitions"], "properties": {
    "unit": {"type": "string"}, "month": {"type": "string"}, "received": {"type": "integer"},
    "avg_working_days_to_acknowledge": {"type": ["number", "null"]}, "avg_days_to_explain": {"type": ["number", "null"]},
    "satisfaction_avg": {"type": ["number", "null"]}, "on_time_rate": {"type": ["number", "null"]},
    "breakdown": {"type": "array", "items": {"type": "object"}}}}
OPEN311_ERROR = {"type": "array", "items": {"type": "object", "required": ["code", "description"], "properties": {
    "code": {"type": "integer"}, "description": {"type": "string"}}}}
OPEN311_REQUEST = {"type": "object", "required": ["service_request_id", "status", "service_code", "requested_datetime"],
                   "properties": {"service_request_id": {"type": "string"},
                                  "status": {"type": "string", "enum": ["open", "closed"]},
                                  "status_notes": {"type": "string"}, "service_name": {"type": "string"},
                                  "service_code": {"type": "string"}, "description": {"type": "string"},
                                  "agency_responsible": {"type": "string"}, "service_notice": {"type": "string"},
                                  "requested_datetime": {"type": "string"}, "updated_datetime": {"type": "string"},
                                  "expected_datetime": {"type": "string"}}}


def _open311(status: int, schema: dict, description: str = "OK") -> dict:
    return {str(status): {"description": description, "content": {"application/json": {"schema": schema}}}}


def _reports_and_open_data() -> dict:
    unit = {"name": "unit", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 32},
            "description": "Unit code; the report covers it and every unit below it"}
    month = _q("month", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}, "YYYY-MM, default: this month")
    return {
        "/api/v1/reports/monthly": {"get": {
            "summary": "Monthly report of a unit, rolled up over the units below it (json, xlsx or csv)",
            "tags": ["supervisors"], "security": BEARER,
            "parameters": [unit, month, _q("format", {"type": "string", "enum": ["json", "xlsx", "csv"]})],
            "responses": {"200": {"description": "The report", "content": {
                "application/json": {"schema": MONTHLY}, XLSX: {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}}}}, **_err(401, 403, 404, 422)}}},
        "/api/v1/reports/yearly": {"get": {
            "summary": "Yearly evaluation per unit and per official (on-time rate, late cases, satisfaction)",
            "tags": ["supervisors"], "security": BEARER,
            "parameters": [unit, _q("year", {"type": "string", "pattern": "^[0-9]{4}$"})],
            "responses": {**_ok(200, {"type": "object", "required": ["unit", "year", "total", "units", "officials"]}),
                          **_err(401, 403, 404, 422)}}},
        "/api/v1/reports/unhappy-ratings": {"get": {
            "summary": "Ratings of max_score (default 2) or less, with the citizen's comment",
            "tags": ["supervisors"], "security": BEARER,
            "parameters": [unit, _q("month", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}, "by month rated"),
                           _q("max_score", {"type": "integer", "minimum": 1, "maximum": 5}), *PAGING],
            "responses": {**_ok(200, LIST), **_err(401, 403, 404, 422)}}},
        "/api/v1/export/cases": {"get": {
            "summary": "Every case change after a cursor, redacted, for a national accountability database",
            "description": "Roles exporter or admin, in the units granted. Pass the answer's `next` as `since` "
                           "to get the following changes; each change comes exactly once, oldest first. Items carry "
                           "no requester name, address, phone or email, no content and no rating comment.",
            "tags": ["open data"], "security": BEARER,
            "parameters": [_q("since", {"type": "string", "pattern": "^[0-9]{0,18}$"}, "cursor: `next` of the last answer"),
                           _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
            "responses": {**_ok(200, {"type": "object", "required": ["items", "next", "has_more"], "properties": {
                "items": {"type": "array", "items": {"type": "object", "required": ["id", "at", "event", "case"]}},
                "next": {"type": "string"}, "has_more": {"type": "boolean"}}}), **_err(401, 403, 422)}}},
        "/open311/v2/services.json": {"get": {
            "summary": "Open311 GeoReport v2: the request types", "tags": ["open data"],
            "responses": _open311(200, {"type": "array", "items": {"type": "object", "required": [
                "service_code", "service_name", "metadata", "type"]}})}},
        "/open311/v2/requests.json": {"get": {
            "summary": "Open311 GeoReport v2: published cases (read-only, redacted)", "tags": ["open data"],
            "parameters": [_q("service_request_id", {"type": "string"}, "comma-separated codes; overrides the rest"),
                           _q("service_code", {"type": "string"}),
                           _q("start_date", {"type": "string", "format": "date-time"}),
                           _q("end_date", {"type": "string", "format": "date-time"}),
                           _q("status", {"type": "string", "enum": ["open", "closed", "open,closed"]}),
                           _q("jurisdiction_id", {"type": "string"}),
                           _q("page", {"type": "integer", "minimum": 1, "maximum": 200}),
                           _q("page_size", {"type": "integer", "minimum": 1, "maximum": 1000})],
            "responses": {**_open311(200, {"type": "array", "items": OPEN311_REQUEST}),
                          **_open311(400, OPEN311_ERROR, "Invalid parameter")}}},
        "/open311/v2/requests/{code}.json": {"get": {
            "summary": "Open311 GeoReport v2: one published case", "tags": ["open data"],
            "parameters": [_path("code")],
            "responses": {**_open311(200, {"type": "array", "items": OPEN311_REQUEST}),
                          **_open311(404, OPEN311_ERROR, "Unknown or unpublished")}}},
    }


# -- supervisors' console (branch supervise) -----------------------------------------------------

STUCK_REASON_CODES = ["task_overdue", "incident", "no_work", "inactive"]
_NOTE = {"type": "string", "minLength": 3, "maxLength": 5000, "description": "Why (required, audited)"}
_ACTION_ERRORS = (400, 401, 403, 404, 409, 422)


def _supervision_paths() -> dict:
    filters = [_q("status", {"type": "string"}), _q("step", {"type": "string"}), _q("unit", {"type": "string"}),
               _q("assignee", {"type": "string"}), _q("overdue", {"type": "boolean"}),
               _q("stuck", {"type": "boolean"}, "an open task past due, an incident, nothing waiting, or no "
                  "activity for N working days"),
               _q("reason", {"type": "string", "enum": STUCK_REASON_CODES}, "stuck for this reason"),
               _q("incident", {"type": "boolean"}), _q("received_from", {"type": "string", "format": "date"}),
               _q("received_to", {"type": "string", "format": "date"}), _q("closed", {"type": "boolean"}),
               _q("q", {"type": "string"}), *PAGING]
    code = [_path("code")]

    def action(summary: str, required: list[str], properties: dict, status: int = 200, role: str = "supervisors"):
        return {"post": {"summary": summary, "tags": [role], "security": BEARER, "parameters": code,
                         "requestBody": _body({"type": "object", "required": required, "properties": properties}),
                         "responses": {**_ok(status), **_err(*_ACTION_ERRORS)}}}

    return {
        "/api/v1/instances": {"get": {
            "summary": "Cases for supervisors, each with its stuck reasons [{code, label}]", "tags": ["supervisors"],
            "security": BEARER, "parameters": filters, "responses": {**_ok(200, LIST), **_err(401, 403, 422)}}},
        "/api/v1/instances/{code}/diagram": {"get": {
            "summary": "The case's BPMN XML with completed, active, overdue and incident element ids",
            "tags": ["supervisors"], "security": BEARER, "parameters": code,
            "responses": {**_ok(200, {"type": "object", "required": ["xml", "completed", "active", "overdue", "incidents"]}),
                          **_err(401, 403, 404)}}},
        "/api/v1/instances/{code}/trail": {"get": {
            "summary": "Every audit event of the case: who, when, action, before/after changes",
            "tags": ["supervisors"], "security": BEARER, "parameters": code,
            "responses": {**_ok(200, {"type": "object", "required": ["items"]}), **_err(401, 403, 404)}}},
        "/api/v1/instances/{code}/reassign": action(
            "Give an open task (default: the current step's) to another official of its role; nothing is suspended",
            ["assignee", "note"], {"assignee": {"type": "string"}, "note": _NOTE, "task_id": {"type": "string"}}),
        "/api/v1/instances/{code}/candidates": action(
            "Add an official of the unit as a candidate of an open task", ["username", "note"],
            {"username": {"type": "string"}, "note": _NOTE, "task_id": {"type": "string"}}, status=201),
        "/api/v1/instances/{code}/urge": action(
            "Urge (đôn đốc) whoever holds the open task, with a note", ["note"],
            {"note": _NOTE, "task_id": {"type": "string"}}),
        "/api/v1/instances/{code}/incidents/{job_id}/retry": {"post": {
            "summary": "Run a failed timer again", "tags": ["supervisors"], "security": BEARER,
            "parameters": [_path("code"), _path("job_id", {"type": "integer"})], "requestBody": _body(None, False),
            "responses": {**_ok(), **_err(*_ACTION_ERRORS)}}},
        "/api/v1/instances/{code}/terminate": action(
            "Terminate (art. 14) with its legal ground", ["ground", "note"],
            {"ground": {"type": "string", "enum": ["no_successor", "withdrawn"]}, "note": _NOTE}),
        "/api/v1/instances/{code}/move": action(
            "Administrators: move the token back to a user task the case already passed", ["to", "note"],
            {"to": {"type": "string", "description": "BPMN element id"}, "note": _NOTE}, role="administrators"),
        "/api/v1/instances/bulk": {"post": {
            "summary": "Reassign, urge or retry on many cases, each in its own transaction", "tags": ["supervisors"],
            "security": BEARER,
            "requestBody": _body({"type": "object", "required": ["action", "codes", "note"], "properties": {
                "action": {"type": "string", "enum": ["reassign", "urge", "retry"]},
                "codes": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 200},
                "note": _NOTE, "assignee": {"type": "string"}}}),
            "responses": {**_ok(200, {"type": "object", "required": ["results", "succeeded", "failed"]}),
                          **_err(400, 401, 403, 422)}}},
        "/api/v1/saved-filters": {
            "get": {"summary": "My saved instance filters and those shared with my roles", "tags": ["supervisors"],
                    "security": BEARER, "responses": {**_ok(200, {"type": "object", "required": ["items"]}),
                                                      **_err(401, 403)}},
            "post": {"summary": "Save an instance filter, optionally shared with a role", "tags": ["supervisors"],
                     "security": BEARER,
                     "requestBody": _body({"type": "object", "required": ["name", "params"], "properties": {
                         "name": {"type": "string"}, "params": {"type": "object"},
                         "shared_with_role": {"type": "string"}}}),
                     "responses": {**_ok(201), **_err(400, 401, 403, 422)}}},
        "/api/v1/saved-filters/{filter_id}": {"delete": {
            "summary": "Delete my saved filter", "tags": ["supervisors"], "security": BEARER,
            "parameters": [_path("filter_id", {"type": "integer"})],
            "responses": {"204": {"description": "Deleted"}, **_err(401, 403, 404)}}},
        "/api/v1/dashboard": {"get": {
            "summary": "Per unit and rolled up to the parent: open, overdue, escalated, stuck, due soon, on-time "
                       "rate, average working days to acknowledge and to explain, satisfaction; and the totals of "
                       "the open, overdue, escalated, stuck and due-soon cases over the whole scope",
            "tags": ["supervisors"], "security": BEARER, "parameters": [_q("unit", {"type": "string"})],
            "responses": {**_ok(200, {"type": "object", "required": ["month", "units"]}), **_err(401, 403, 422)}}},
        "/api/v1/heatmap": {"get": {
            "summary": "Per BPMN element: open tasks, overdue tasks, incidents (all versions of a process, or one)",
            "tags": ["supervisors"], "security": BEARER,
            "parameters": [_q("key", {"type": "string"}), _q("definition", {"type": "integer"}),
                           _q("unit", {"type": "string"})],
            "responses": {**_ok(200, {"type": "object", "required": ["xml", "nodes"]}), **_err(401, 403, 404, 422)}}},
        "/api/v1/settings/stuck-inactive-days": {"put": {
            "summary": "Administrators: after how many working days without activity a case is stuck",
            "tags": ["administrators"], "security": BEARER,
            "requestBody": _body({"type": "object", "required": ["days"], "properties": {
                "days": {"type": "integer", "minimum": 1, "maximum": 250}}}),
            "responses": {**_ok(), **_err(400, 401, 403, 422)}}},
    }
