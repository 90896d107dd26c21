"""The inbox shows each official their own units' tasks, though officials whose roles have the same
shape share one statement (tasks._inbox_query): their roles and units are bound, not built in."""
from giaitrinh.engine.accounts import ALL_UNITS, Actor
from giaitrinh.engine.services import tasks

from .helpers import submit


def _codes(actor, scope="unit"):
    return {item["request_code"] for item in tasks.list_tasks(actor, scope=scope)["items"]}


def test_officials_of_the_same_shape_see_their_own_units_in_turn(world, people):
    mx, gm = submit()["code"], submit(unit="GM")["code"]
    reception_gm = Actor("tiepnhan_gm", roles={"reception": frozenset({"GM"})})
    for _ in range(2):  # alternately, through the same cached statement
        assert _codes(people["tiepnhan"]) == {mx}
        assert _codes(reception_gm) == {gm}
    # The role is bound too: the same unit under another role sees none of reception's tasks.
    assert _codes(Actor("vanthu_gm", roles={"archivist": frozenset({"GM"})})) == set()


def test_a_unit_supervisor_sees_only_their_units_under_all(world, people):
    mx, gm = submit()["code"], submit(unit="GM")["code"]
    assert _codes(people["thanhtra"], scope="all") == {mx}
    assert _codes(Actor("thanhtra_gm", roles={"supervisor": frozenset({"GM"})}), scope="all") == {gm}
    assert _codes(Actor("thanhtra_all", roles={"supervisor": frozenset({ALL_UNITS})}), scope="all") == {mx, gm}


def test_roles_beyond_the_tenth_keep_their_own_units(world):
    mx, gm = submit()["code"], submit(unit="GM")["code"]
    # Ten roles over every unit sort before "reception": its units are the eleventh parameter.
    roles = {f"r{i}": frozenset({ALL_UNITS}) for i in range(10)}
    assert _codes(Actor("many_gm", roles={**roles, "reception": frozenset({"GM"})})) == {gm}
    assert _codes(Actor("many_mx", roles={**roles, "reception": frozenset({"MX"})})) == {mx}
