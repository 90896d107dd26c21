"""Process designers: every version of every process, the modeler (bpmn-js), task forms, migration.

The modeler page is static HTML plus ``static/modeler.js``; it talks to the JSON API of
API.md (``/api/v1/definitions...``) with the session cookie and the ``X-CSRF-Token`` header.
Saving a diagram always makes a new, immutable version through ``services.definitions``.
"""
from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..config import PROCESSES_DIR
from ..engine.errors import ServiceError, ValidationFailed
from ..engine.services import definitions
from . import schema_form
from .auth import login_required, require_actor
from .feedback import run_and_flash
from .policy import policy

bp = Blueprint("design", __name__, url_prefix="/thiet-ke")

ROLE = "role:designer"


def _render_list(problems=None, uploaded_name=None, status=200):
    actor = require_actor()
    listed = definitions.list_definitions(actor)
    return render_template("design/list.html", definitions=listed["items"], problems=problems or [],
                           uploaded_name=uploaded_name), status


@bp.get("/")
@policy(ROLE)
@login_required
def index():
    return _render_list()


@bp.post("/tai-len")
@policy(ROLE)
@login_required
def upload():
    actor = require_actor()
    file = request.files.get("file")
    xml = file.read() if file is not None else b""
    name = (file.filename or "")[:200] if file is not None else ""
    if not xml:
        flash(_("Hãy chọn một tệp .bpmn để tải lên."), "error")
        return _render_list(status=422)
    try:
        result = definitions.upload(xml, actor, forms_dir=PROCESSES_DIR / "forms")
    except definitions.InvalidDefinition as exc:
        flash(_("Tệp %(name)s chưa hợp lệ: %(n)s vấn đề, xem danh sách bên dưới.", name=name, n=len(exc.problems)),
              "error")
        return _render_list([p.as_dict() for p in exc.problems], name, 422)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _render_list(status=exc.status)
    if result.get("existing"):
        flash(_("Nội dung trùng với phiên bản %(v)s đã có; không tạo phiên bản mới.", v=result["version"]), "info")
    else:
        flash(_("Đã lưu bản nháp phiên bản %(v)s.", v=result["version"]), "success")
    return redirect(url_for("design.index"), 303)


@bp.post("/<int:definition_id>/trien-khai")
@policy(ROLE)
@login_required
def deploy(definition_id: int):
    run_and_flash(lambda: definitions.deploy(definition_id, require_actor()),
                  _("Đã triển khai: yêu cầu mới chạy trên phiên bản này; hồ sơ đang xử lý giữ phiên bản của mình."))
    return redirect(url_for("design.index"), 303)


@bp.get("/<int:definition_id>/tai-ve")
@policy(ROLE)
@login_required
def download(definition_id: int):
    found = definitions.bpmn(definition_id, require_actor())
    response = current_app.response_class(found["bpmn"], mimetype="application/xml")
    response.headers["Content-Disposition"] = f'attachment; filename="{found["key"]}-v{found["version"]}.bpmn"'
    return response


@bp.get("/<int:definition_id>/mo-hinh")
@policy(ROLE)
@login_required
def modeler(definition_id: int):
    definition = definitions.get_definition(definition_id, require_actor())
    return render_template("design/modeler.html", definition=definition, roles=definitions.ROLES,
                           messages=_modeler_messages())


@bp.post("/bieu-mau/xem-truoc")
@policy(ROLE)
@login_required
def preview_form():
    """A task form as the task page will render it, and what is wrong with it (JSON in, JSON out)."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or "schema" not in data:
        raise ValidationFailed(_("Thiếu biểu mẫu (JSON Schema)."), {"schema": "JSON Schema"})
    checked = definitions.check_form(data["schema"], require_actor())
    html = ""
    if checked["valid"]:
        from flask import get_template_attribute

        render = get_template_attribute("tasks/fields.html", "render")
        html = str(render(schema_form.build(data["schema"])))
    return jsonify({"valid": checked["valid"], "problems": checked["problems"], "html": html})


@bp.get("/<int:definition_id>/chuyen-doi")
@policy(ROLE)
@login_required
def migration(definition_id: int):
    found = definitions.migration_candidates(definition_id, require_actor())
    return render_template("design/migrate.html", source=found["definition"], codes=found["codes"],
                           targets=[t for t in found["targets"] if t["status"] == "deployed"],
                           messages=_migration_messages())


def _modeler_messages() -> dict:
    return {
        "loading": _("Đang tải sơ đồ..."),
        "ready": _("Sẵn sàng. Kéo thả từ bảng công cụ bên trái; chọn một phần tử để sửa thuộc tính."),
        "load_failed": _("Không mở được sơ đồ"),
        "checking": _("Đang kiểm tra..."),
        "valid": _("Hợp lệ: không có vấn đề nào."),
        "invalid": _("Có %(n)s vấn đề cần sửa (đánh dấu đỏ trên sơ đồ)."),
        "saving": _("Đang lưu bản nháp..."),
        "saved": _("Đã lưu bản nháp phiên bản %(v)s."),
        "same": _("Nội dung trùng với phiên bản %(v)s đã có."),
        "deploying": _("Đang triển khai..."),
        "deployed": _("Đã triển khai phiên bản %(v)s cho yêu cầu mới."),
        "save_first": _("Hãy lưu bản nháp trước khi triển khai."),
        "error": _("Lỗi"),
        "line": _("dòng"),
        "no_problems": _("Chưa có vấn đề nào được phát hiện."),
        "warnings": _("Lưu ý"),
        "nothing_selected": _("Chọn một phần tử trên sơ đồ để xem và sửa thuộc tính của nó."),
        "type": _("Loại"),
        "step_key": _("Mã bước (id)"),
        "name": _("Tên hiển thị"),
        "make_user_task": _("Chuyển thành bước có người xử lý (user task)"),
        "make_script_task": _("Chuyển thành bước tự động (script task)"),
        "lane": _("Làn (vai trò xử lý)"),
        "no_lane": _("— chưa thuộc làn nào —"),
        "role": _("Vai trò của làn"),
        "no_role": _("— chưa gán vai trò —"),
        "form": _("Biểu mẫu"),
        "no_form": _("— chưa có biểu mẫu —"),
        "new_form": _("+ Tạo biểu mẫu mới cho bước này"),
        "edit_form": _("Sửa biểu mẫu"),
        "status": _("Trạng thái hồ sơ khi tới bước này"),
        "no_status": _("— không đổi —"),
        "form_editor": _("Biểu mẫu"),
        "form_valid": _("Biểu mẫu hợp lệ."),
        "form_json_error": _("Không phải JSON hợp lệ"),
        "preview": _("Xem trước (như cán bộ sẽ thấy)"),
        "opened_file": _("Đã mở tệp %(name)s; hãy kiểm tra rồi lưu bản nháp."),
        "id_taken": _("Mã này đã được dùng cho phần tử khác."),
        "id_invalid": _("Mã bước gồm chữ, số và dấu _, bắt đầu bằng chữ."),
        "periods": _("Thời hạn luật định của phiên bản này"),
        "period_acknowledge_working_days": _("Thông báo thụ lý (ngày làm việc)"),
        "period_explain_days": _("Giải trình (ngày)"),
        "period_extension_max_days": _("Gia hạn tối đa (ngày)"),
        "period_extensions_allowed": _("Số lần được gia hạn"),
        "period_escalation_repeat_working_days": _("Nhắc lại cảnh báo quá hạn sau (ngày làm việc)"),
    }


def _migration_messages() -> dict:
    return {
        "checking": _("Đang chạy thử..."),
        "ok": _("Chuyển được"),
        "problem": _("Không chuyển được"),
        "migrating": _("Đang chuyển %(done)s / %(total)s hồ sơ..."),
        "done": _("Đã chuyển %(n)s hồ sơ sang phiên bản %(v)s."),
        "summary": _("%(ok)s / %(total)s hồ sơ chuyển được."),
        "none": _("Không có hồ sơ đang mở nào trên phiên bản này."),
        "error": _("Lỗi"),
        "migrated": _("Đã chuyển"),
    }
