-- Acknowledgements of device alarms by clinicians at central. A row stays pending
-- (delivered_at NULL) until central has sent it to the device that raised the alarm,
-- either at once over the device's open ingest connection or when it next connects.
CREATE TABLE alarm_acknowledgements (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id text NOT NULL,
    kind text NOT NULL,
    device_id text NOT NULL REFERENCES devices (id),
    patient_id text NOT NULL REFERENCES patients (id),
    user_id bigint NOT NULL REFERENCES users (id),
    acknowledged_by text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX alarm_acknowledgements_pending
    ON alarm_acknowledgements (device_id, id) WHERE delivered_at IS NULL;
CREATE INDEX alarm_acknowledgements_alarm
    ON alarm_acknowledgements (device_id, alarm_id);
