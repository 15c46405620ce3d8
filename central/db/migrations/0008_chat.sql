-- End-to-end encrypted clinical chat. Central stores public keys and sealed
-- envelopes only: no column holds message text or a private key.

-- A user's published key pairs (raw uncompressed P-256 points). key_id is derived
-- from both keys, so it names exactly one pair. Publishing a new pair supersedes the
-- current one; superseded keys stay so that older messages can still be verified.
CREATE TABLE chat_keys (
    key_id text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{32}$'),
    user_id bigint NOT NULL REFERENCES users (id),
    ecdh_public bytea NOT NULL CHECK (length(ecdh_public) = 65),
    signing_public bytea NOT NULL CHECK (length(signing_public) = 65),
    created_at timestamptz NOT NULL DEFAULT now(),
    superseded_at timestamptz
);
CREATE UNIQUE INDEX chat_keys_one_current_per_user
    ON chat_keys (user_id) WHERE superseded_at IS NULL;

-- Every thread is about one patient, and optionally one of that patient's alarms,
-- so the patient's consent decides who may join, read and post.
CREATE TABLE chat_threads (
    id text PRIMARY KEY CHECK (id ~ '^T-[0-9a-f]{32}$'),
    patient_id text NOT NULL REFERENCES patients (id),
    alarm_id text,
    title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    created_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_threads_patient ON chat_threads (patient_id, created_at);

CREATE TABLE chat_members (
    thread_id text NOT NULL REFERENCES chat_threads (id),
    user_id bigint NOT NULL REFERENCES users (id),
    added_by bigint NOT NULL REFERENCES users (id),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, user_id)
);

-- The envelope as the sender built it (see docs/chat.md). message_id and the
-- (sender key, counter) pair are unique, so central itself never stores a replay.
CREATE TABLE chat_messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE,
    thread_id text NOT NULL REFERENCES chat_threads (id),
    sender_id bigint NOT NULL REFERENCES users (id),
    sender_key_id text NOT NULL REFERENCES chat_keys (key_id),
    counter bigint NOT NULL CHECK (counter >= 1),
    envelope jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sender_key_id, counter)
);
CREATE INDEX chat_messages_thread ON chat_messages (thread_id, id);
