-- Initial schema: people, places, devices, the ingest ledger, measurements, alarms
-- and the append-only audit log. All times are timestamptz in UTC.

CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9._-]{1,64}$'),
    display_name text NOT NULL,
    password_hash text NOT NULL,
    roles text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

CREATE TABLE wards (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE beds (
    id text PRIMARY KEY,
    ward_id text NOT NULL REFERENCES wards (id),
    label text NOT NULL
);

-- A bed holds at most one patient at a time.
CREATE TABLE patients (
    id text PRIMARY KEY,
    display_name text NOT NULL,
    bed_id text UNIQUE REFERENCES beds (id) ON DELETE SET NULL,
    admitted_at timestamptz NOT NULL DEFAULT now()
);

-- Consent: a clinician may read a patient while an assignment is current,
-- that is starts_at <= now() and (ends_at IS NULL or now() < ends_at).
CREATE TABLE assignments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    patient_id text NOT NULL REFERENCES patients (id),
    starts_at timestamptz NOT NULL DEFAULT now(),
    ends_at timestamptz,
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX assignments_user_patient ON assignments (user_id, patient_id);

CREATE TABLE devices (
    id text PRIMARY KEY,
    secret_hash text NOT NULL,
    model text,
    firmware text,
    bed_id text REFERENCES beds (id) ON DELETE SET NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz,
    retired_at timestamptz
);

-- Idempotency ledger: one row per (device, seq) ever stored. A retransmitted message
-- hits the primary key and is acknowledged without storing anything twice.
CREATE TABLE device_messages (
    device_id text NOT NULL REFERENCES devices (id),
    seq bigint NOT NULL CHECK (seq >= 0),
    type text NOT NULL,
    device_time timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    patient_id text REFERENCES patients (id),
    PRIMARY KEY (device_id, seq)
);

-- One row per numeric measurement; ordinal is its position in the message, so a
-- message may repeat a code without breaking the key.
CREATE TABLE vitals (
    device_id text NOT NULL,
    seq bigint NOT NULL,
    ordinal smallint NOT NULL,
    patient_id text REFERENCES patients (id),
    code text NOT NULL,
    value double precision NOT NULL,
    unit text NOT NULL,
    quality real,
    measured_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, seq, ordinal),
    FOREIGN KEY (device_id, seq) REFERENCES device_messages (device_id, seq)
);
CREATE INDEX vitals_patient_time ON vitals (patient_id, measured_at);
CREATE INDEX vitals_patient_code_time ON vitals (patient_id, code, measured_at);

-- Samples are raw int16 ADC counts; multiply by scale_uv for microvolts.
CREATE TABLE waveform_chunks (
    device_id text NOT NULL,
    seq bigint NOT NULL,
    patient_id text REFERENCES patients (id),
    lead text NOT NULL,
    sample_rate_hz double precision NOT NULL,
    first_sample_at timestamptz NOT NULL,
    first_sample_index bigint NOT NULL,
    scale_uv double precision NOT NULL,
    samples int2[] NOT NULL,
    PRIMARY KEY (device_id, seq),
    FOREIGN KEY (device_id, seq) REFERENCES device_messages (device_id, seq)
);
CREATE INDEX waveform_chunks_patient_time ON waveform_chunks (patient_id, first_sample_at);

CREATE TABLE alarms (
    device_id text NOT NULL,
    seq bigint NOT NULL,
    alarm_id text NOT NULL,
    patient_id text REFERENCES patients (id),
    kind text NOT NULL,
    priority text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
    category text NOT NULL CHECK (category IN ('physiological', 'technical')),
    state text NOT NULL CHECK (state IN ('raised', 'cleared')),
    started_at timestamptz NOT NULL,
    evidence text NOT NULL,
    PRIMARY KEY (device_id, seq),
    FOREIGN KEY (device_id, seq) REFERENCES device_messages (device_id, seq)
);
CREATE INDEX alarms_patient_time ON alarms (patient_id, started_at);

-- patient_id and actor_id carry no foreign keys: the log must outlive the rows
-- it mentions.
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_kind text NOT NULL CHECK (actor_kind IN ('user', 'device', 'anonymous', 'system')),
    actor_id text,
    action text NOT NULL,
    patient_id text,
    detail jsonb NOT NULL DEFAULT '{}',
    outcome text NOT NULL CHECK (outcome IN ('ok', 'refused', 'error'))
);
CREATE INDEX audit_log_patient_at ON audit_log (patient_id, at);
CREATE INDEX audit_log_actor_at ON audit_log (actor_kind, actor_id, at);

CREATE FUNCTION audit_log_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_reject_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change();
