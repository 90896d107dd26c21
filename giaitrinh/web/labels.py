"""The domain's words as people read them: statuses, steps, roles, events, in Vietnamese first."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

STATUS = {
    "received": _l("Đã tiếp nhận"),
    "needs_info": _l("Chờ bổ sung thông tin"),
    "accepted": _l("Đã thụ lý"),
    "refused": _l("Từ chối giải trình"),
    "redirected": _l("Chuyển cơ quan có thẩm quyền"),
    "assigned": _l("Đã phân công"),
    "in_progress": _l("Đang giải trình"),
    "dialogue": _l("Làm việc trực tiếp"),
    "extended": _l("Đã gia hạn"),
    "suspended": _l("Tạm đình chỉ"),
    "explained": _l("Đã giải trình"),
    "published": _l("Đã công khai"),
    "terminated": _l("Đã đình chỉ"),
}

STEP = {
    "receive": _l("Tiếp nhận, thụ lý"),
    "assign": _l("Phân công"),
    "explain": _l("Giải trình"),
    "dialogue": _l("Làm việc trực tiếp"),
    "approve": _l("Duyệt, ký văn bản"),
    "publish": _l("Công khai"),
    "escalate": _l("Xử lý quá hạn"),
    "needs_info": _l("Chờ bổ sung thông tin"),
}

ROLE = {
    "reception": _l("Cán bộ tiếp nhận"),
    "head": _l("Thủ trưởng đơn vị"),
    "official": _l("Người được phân công"),
    "supervisor": _l("Thanh tra, giám sát"),
    "designer": _l("Quản trị quy trình"),
    "admin": _l("Quản trị hệ thống"),
    "exporter": _l("Kết nối dữ liệu (xuất dữ liệu mở)"),
}

DEADLINE = {
    "acknowledge_by": _l("Hạn thông báo thụ lý"),
    "explain_by": _l("Hạn giải trình"),
}

EVENT = {
    "submitted": _l("Đã tiếp nhận yêu cầu"),
    "info_requested": _l("Đề nghị bổ sung thông tin"),
    "info_provided": _l("Người yêu cầu đã bổ sung thông tin"),
    "accepted": _l("Thông báo thụ lý giải trình"),
    "refused": _l("Thông báo từ chối giải trình"),
    "redirected": _l("Hướng dẫn đến cơ quan có thẩm quyền"),
    "assigned": _l("Đã phân công người giải trình"),
    "dialogue": _l("Làm việc trực tiếp"),
    "extended": _l("Gia hạn giải trình"),
    "explained": _l("Đã ban hành văn bản giải trình"),
    "published": _l("Đã công khai kết quả giải trình"),
    "suspended": _l("Tạm đình chỉ giải trình"),
    "resumed": _l("Tiếp tục giải trình"),
    "withdrawn": _l("Người yêu cầu rút yêu cầu"),
    "rated": _l("Người yêu cầu đánh giá mức độ hài lòng"),
    "escalated": _l("Quá hạn: đã báo cáo lãnh đạo"),
    "incident": _l("Sự cố: bộ hẹn giờ lỗi nhiều lần"),
    "incident_retried": _l("Chạy lại sau sự cố"),
    "personal_data_viewed": _l("Cán bộ xem thông tin cá nhân"),
    "retention_purged": _l("Xóa thông tin cá nhân hết thời hạn lưu trữ"),
    # branch supervise
    "reassigned": _l("Giao lại công việc"),
    "candidate_added": _l("Thêm người cùng xử lý"),
    "urged": _l("Đôn đốc"),
    "terminated": _l("Đình chỉ giải trình"),
    "token_moved": _l("Chuyển hồ sơ về bước trước"),
    "task_completed": _l("Hoàn thành công việc"),
    "claimed": _l("Nhận xử lý công việc"),
    "approved": _l("Duyệt văn bản giải trình"),
    "returned": _l("Trả lại dự thảo"),
    "escalation_handled": _l("Đã xử lý cảnh báo quá hạn"),
    "publication_declined": _l("Không công khai"),
}

REDACTION = {
    "requester_name": _l("Họ tên người yêu cầu"),
    "requester_address": _l("Địa chỉ người yêu cầu"),
    "requester_email": _l("Thư điện tử người yêu cầu"),
    "requester_phone": _l("Số điện thoại người yêu cầu"),
    "email": _l("Địa chỉ thư điện tử"),
    "phone": _l("Số điện thoại"),
    "id_number": _l("Số CCCD/CMND"),
    "rule": _l("Quy tắc ẩn của quản trị viên"),
}

SUSPENSION_GROUND = {
    "requester_deceased": _l("Người yêu cầu chết, tổ chức chia, tách, sáp nhập, giải thể mà chưa có người kế thừa"),
    "lost_capacity": _l("Người yêu cầu mất năng lực hành vi dân sự mà chưa có người đại diện"),
    "unable": _l("Người yêu cầu ốm đau hoặc vì lý do khách quan khác không thể tiếp tục"),
}

SCORE = {
    1: _l("Rất không hài lòng"),
    2: _l("Không hài lòng"),
    3: _l("Bình thường"),
    4: _l("Hài lòng"),
    5: _l("Rất hài lòng"),
}

# Why a case is stuck (branch supervise): short words for the list, the long ones in the engine.
STUCK_REASON = {
    "task_overdue": _l("Công việc quá hạn"),
    "incident": _l("Sự cố"),
    "no_work": _l("Không còn việc chờ"),
    "inactive": _l("Lâu không hoạt động"),
}

TERMINATION_GROUND = {
    "no_successor": _l("Không có người kế thừa, người đại diện (khoản 2 Điều 14)"),
    "withdrawn": _l("Người yêu cầu rút toàn bộ yêu cầu (khoản 2 Điều 14)"),
}

# The path a request normally takes, for the progress strip on the tracking page.
STAGES = [
    ("received", _l("Tiếp nhận")),
    ("accepted", _l("Thụ lý")),
    ("assigned", _l("Phân công")),
    ("in_progress", _l("Giải trình")),
    ("explained", _l("Văn bản giải trình")),
    ("published", _l("Công khai")),
]
_STAGE_OF = {"needs_info": "received", "dialogue": "in_progress", "extended": "in_progress",
             "suspended": "in_progress"}


def stage_index(status: str) -> int:
    """Where a status sits on the usual path (0..5); -1 when the case left it (refused, ...)."""
    keys = [key for key, _label in STAGES]
    status = _STAGE_OF.get(status, status)
    return keys.index(status) if status in keys else -1


def label(table: dict, key, default: str | None = None) -> str:
    value = table.get(key)
    return str(value) if value is not None else (default if default is not None else str(key or ""))


def register(app) -> None:
    tables = {"status": STATUS, "step": STEP, "role": ROLE, "deadline": DEADLINE, "event": EVENT,
              "suspension_ground": SUSPENSION_GROUND, "score": SCORE, "redaction": REDACTION,
              "stuck_reason": STUCK_REASON, "termination_ground": TERMINATION_GROUND}
    for name, table in tables.items():
        app.add_template_filter(lambda key, default=None, _t=table: label(_t, key, default), f"{name}_label")
