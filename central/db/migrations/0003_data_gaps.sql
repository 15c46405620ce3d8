-- Data a device produced but discarded (its buffer was full), reported so that a
-- gap in a patient's record is explicit, never silent.
CREATE TABLE data_gaps (
    device_id text NOT NULL,
    seq bigint NOT NULL,
    patient_id text REFERENCES patients (id),
    reason text NOT NULL,
    lead text,
    first_sample_index bigint,
    sample_count integer NOT NULL CHECK (sample_count >= 0),
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    messages_dropped integer NOT NULL CHECK (messages_dropped >= 1),
    PRIMARY KEY (device_id, seq),
    FOREIGN KEY (device_id, seq) REFERENCES device_messages (device_id, seq)
);
CREATE INDEX data_gaps_patient_at ON data_gaps (patient_id, first_at);
