"""Inventory ConfigMap names: one per (app, target), never shared by two placements."""

from __future__ import annotations

import pytest

from conveyor.cluster.apply import Placement


@pytest.mark.parametrize(
    ("app", "target", "name", "legacy"),
    [
        ("web", "dev", "conveyor-inventory.web.dev", "conveyor-inventory-web-dev"),
        ("a-b", "c", "conveyor-inventory.a-b.c", "conveyor-inventory-a-b-c"),
        ("a", "b-c", "conveyor-inventory.a.b-c", "conveyor-inventory-a-b-c"),
        ("shop", "prod-eu", "conveyor-inventory.shop.prod-eu", "conveyor-inventory-shop-prod-eu"),
    ],
)
def test_inventory_names(app: str, target: str, name: str, legacy: str) -> None:
    placement = Placement(app=app, target=target, namespace="ns")

    assert placement.inventory_name == name
    assert placement.legacy_inventory_name == legacy


@pytest.mark.parametrize(
    ("first", "second"),
    [(("a-b", "c"), ("a", "b-c")), (("a-b-c", "d"), ("a", "b-c-d")), (("x", "y-z"), ("x-y", "z"))],
)
def test_placements_whose_old_names_collided_get_different_inventories(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    one = Placement(app=first[0], target=first[1], namespace="ns")
    other = Placement(app=second[0], target=second[1], namespace="ns")

    assert one.legacy_inventory_name == other.legacy_inventory_name, "the collision this fixes"
    assert one.inventory_name != other.inventory_name
