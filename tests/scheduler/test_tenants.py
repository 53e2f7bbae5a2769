import pytest

from fairgate.scheduler import InvalidInput
from fairgate.scheduler.tenants import TenantBook


def test_unknown_tenants_weigh_one_and_weights_must_be_positive():
    book = TenantBook()
    assert book.weight("new") == 1.0
    book.set_weight("gold", 3)
    assert book.weight("gold") == 3.0
    for bad in (0, -1, float("inf"), True):
        with pytest.raises(InvalidInput):
            book.set_weight("gold", bad)
    assert [a.name for a in book] == ["gold"]
