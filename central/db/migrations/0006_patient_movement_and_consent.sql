-- Patient movement (bed stays), assignments to beds and wards, patient-level access
-- rules and break-the-glass grants.

ALTER TABLE patients ADD COLUMN discharged_at timestamptz;

-- One row per period a patient spent in a bed. ended_at is NULL while it lasts.
-- Ingest attributes a device message to the stay of the device's bed that covers
-- the message's time, so data follows the patient and not the bed.
CREATE TABLE bed_stays (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id text NOT NULL REFERENCES patients (id),
    bed_id text NOT NULL REFERENCES beds (id),
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX bed_stays_open_per_bed ON bed_stays (bed_id) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX bed_stays_open_per_patient
    ON bed_stays (patient_id) WHERE ended_at IS NULL;
CREATE INDEX bed_stays_bed_time ON bed_stays (bed_id, started_at);

INSERT INTO bed_stays (patient_id, bed_id, started_at)
SELECT id, bed_id, admitted_at FROM patients WHERE bed_id IS NOT NULL;

-- patients.bed_id stays the one place that says where a patient is now. This
-- trigger keeps bed_stays in step with it, whoever writes the column.
CREATE FUNCTION patients_track_bed_stay() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.bed_id IS NOT DISTINCT FROM OLD.bed_id THEN
            RETURN NEW;
        END IF;
        UPDATE bed_stays SET ended_at = now()
        WHERE patient_id = NEW.id AND ended_at IS NULL;
    END IF;
    IF NEW.bed_id IS NOT NULL THEN
        INSERT INTO bed_stays (patient_id, bed_id, started_at)
        VALUES (NEW.id, NEW.bed_id,
                CASE WHEN TG_OP = 'INSERT' THEN LEAST(NEW.admitted_at, now())
                     ELSE now() END);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER patients_bed_stay
    AFTER INSERT OR UPDATE OF bed_id ON patients
    FOR EACH ROW EXECUTE FUNCTION patients_track_bed_stay();

-- An assignment covers exactly one patient, one bed (whoever is in it) or one ward.
ALTER TABLE assignments ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE assignments ADD COLUMN bed_id text REFERENCES beds (id);
ALTER TABLE assignments ADD COLUMN ward_id text REFERENCES wards (id);
ALTER TABLE assignments ADD COLUMN created_by bigint REFERENCES users (id);
ALTER TABLE assignments ADD COLUMN ended_by bigint REFERENCES users (id);
ALTER TABLE assignments ADD CONSTRAINT assignments_one_scope
    CHECK (num_nonnulls(patient_id, bed_id, ward_id) = 1);
CREATE INDEX assignments_user_time ON assignments (user_id, starts_at);

-- A patient's limits on who may see their record. Any 'allow' row turns the
-- patient's record into an allow list, and a 'deny' row always excludes that user.
-- Both narrow what assignments grant, and only break-the-glass overrides them.
CREATE TABLE patient_access_rules (
    patient_id text NOT NULL REFERENCES patients (id),
    user_id bigint NOT NULL REFERENCES users (id),
    effect text NOT NULL CHECK (effect IN ('allow', 'deny')),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by bigint REFERENCES users (id),
    PRIMARY KEY (patient_id, user_id)
);

-- Emergency access without an assignment: a stated reason, a fixed end, and a
-- review by an administrator afterwards.
CREATE TABLE break_glass_grants (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    patient_id text NOT NULL REFERENCES patients (id),
    reason text NOT NULL CHECK (length(btrim(reason)) > 0),
    starts_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    reviewed_at timestamptz,
    reviewed_by bigint REFERENCES users (id),
    review_note text,
    CHECK (expires_at > starts_at)
);
CREATE INDEX break_glass_grants_user_patient
    ON break_glass_grants (user_id, patient_id, expires_at);
CREATE INDEX break_glass_grants_unreviewed
    ON break_glass_grants (starts_at) WHERE reviewed_at IS NULL;
