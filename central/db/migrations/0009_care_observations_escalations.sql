-- Observations a clinician records by hand: what the bedside devices cannot measure
-- (air or supplemental oxygen, ACVPU consciousness) and optional manual readings.
-- NEWS2 on the ward task list takes each parameter from the newest source.
CREATE TABLE manual_observations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id text NOT NULL REFERENCES patients (id),
    user_id bigint NOT NULL REFERENCES users (id),
    recorded_by text NOT NULL,
    observed_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    on_oxygen boolean,
    consciousness text CHECK (consciousness IN ('A', 'C', 'V', 'P', 'U')),
    respiration_rate double precision,
    spo2 double precision,
    systolic_bp double precision,
    pulse double precision,
    temperature double precision,
    note text
);
CREATE INDEX manual_observations_patient_time
    ON manual_observations (patient_id, observed_at);

-- One row per escalated alarm episode. The primary key is the claim: of several
-- central processes running the escalation pass, only the one whose INSERT
-- returns the row escalates, and the others skip it.
CREATE TABLE alarm_escalations (
    device_id text NOT NULL REFERENCES devices (id),
    alarm_id text NOT NULL,
    patient_id text NOT NULL REFERENCES patients (id),
    kind text NOT NULL,
    priority text NOT NULL,
    alarm_started_at timestamptz NOT NULL,
    escalated_at timestamptz NOT NULL,
    recipient_role text NOT NULL,
    recipient_user_ids bigint[] NOT NULL,
    PRIMARY KEY (device_id, alarm_id)
);
CREATE INDEX alarm_escalations_patient_time
    ON alarm_escalations (patient_id, escalated_at);

-- The history timeline lists each connection of a device to a patient's bed; a
-- connection starts with device.hello. A partial index keeps this off the hot path
-- of every other message type.
CREATE INDEX device_messages_hello_patient_time
    ON device_messages (patient_id, device_time) WHERE type = 'device.hello';

-- The escalation pass finds the newest message of each high-priority alarm.
CREATE INDEX alarms_high_priority_newest
    ON alarms (device_id, alarm_id, seq DESC) WHERE priority = 'high';
