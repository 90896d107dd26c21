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
LIST = {"type": "object", "required": ["items", "total"],
        "properties": {"items": {"type": "array", "items": {"type": "object"}}, "total": {"type": "integer"}}}


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
            "responses": {**_ok(200, LIST), **_err(422)}}},
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
        "/api/v1/instances": {"get": {
            "summary": "Cases for supervisors", "tags": ["supervisors"], "security": BEARER,
            "parameters": [_q("status", {"type": "string"}), _q("overdue", {"type": "boolean"}),
                           _q("stuck", {"type": "boolean"}), _q("unit", {"type": "string"}),
                           _q("closed", {"type": "boolean"}), _q("q", {"type": "string"}), *PAGING],
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
                         "multipart/form-data": {"schema": {"type": "object", "properties": {
                             "file": {"type": "string", "format": "binary"}}}}}},
                     "responses": {**_ok(201), **_ok(200, description="Same content as an existing version"),
                                   **_err(401, 403, 413, 422)}}},
        "/api/v1/definitions/{id}/deploy": {"post": {
            "summary": "Deploy a version for new requests", "tags": ["designers"], "security": BEARER,
            "parameters": [_path("id", {"type": "integer"})], "responses": {**_ok(), **_err(401, 403, 404, 409)}}},
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
