-- Device registry for biomedical engineers: the serial number printed on the device,
-- and credential rotation. previous_secret_hash is the credential replaced by the last
-- rotation. It never authenticates; it only tells a device still using its old
-- credential apart from a wrong or guessed one.
ALTER TABLE devices
    ADD COLUMN serial_number text UNIQUE
        CHECK (serial_number ~ '^[A-Za-z0-9._:/-]{1,64}$'),
    ADD COLUMN previous_secret_hash text,
    ADD COLUMN secret_rotated_at timestamptz;

-- Devices may report their battery charge as a numeric. The registry shows the latest
-- one per device, and this partial index keeps that look-up off the vitals rows.
CREATE INDEX vitals_device_battery ON vitals (device_id, measured_at)
    WHERE code = 'MDC_ATTR_VAL_BATT_CHARGE';
