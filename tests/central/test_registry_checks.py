"""Input checks on registering devices and users."""

from __future__ import annotations

import pytest
from central_testkit import Demo

from central.devices import register_device
from central.services import Services
from central.users import upsert_user


async def test_device_for_unknown_bed_rejected(services: Services, demo: Demo) -> None:
    with pytest.raises(ValueError, match="bed 'bed-9' not found"):
        await register_device(services.pool, "dev-9", "bed-9", "long-enough-secret")


async def test_short_device_secret_rejected(services: Services, demo: Demo) -> None:
    with pytest.raises(ValueError, match="at least 8"):
        await register_device(services.pool, "dev-9", demo.bed_id, "")


async def test_short_password_rejected(services: Services) -> None:
    with pytest.raises(ValueError, match="at least 8"):
        await upsert_user(services.pool, "nurse.cy", "Cy", "", ["nurse"])
