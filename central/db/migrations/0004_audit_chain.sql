-- Hash chain over audit_log. Each new row stores prev_hash, the row_hash of the row
-- before it, and row_hash, the SHA-256 that central.audit computes over prev_hash and
-- a canonical encoding of the row's fields. Editing or removing a row then breaks
-- the chain at that row, which `aura-central audit verify` finds.
--
-- Rows written before this migration carry no hashes. The chain starts after
-- audit_chain_head.unchained_through_id, and verify reports those rows as unchained.

ALTER TABLE audit_log
    ADD COLUMN prev_hash text CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    ADD COLUMN row_hash text CHECK (row_hash ~ '^[0-9a-f]{64}$');

-- Exactly one row: the end of the chain. Appends lock it, so two writers can never
-- link to the same predecessor and fork the chain.
CREATE TABLE audit_chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id bigint NOT NULL,
    row_hash text NOT NULL CHECK (row_hash ~ '^[0-9a-f]{64}$'),
    unchained_through_id bigint NOT NULL
);

-- The first chained row links to 64 zeros.
INSERT INTO audit_chain_head (last_id, row_hash, unchained_through_id)
SELECT coalesce(max(id), 0), repeat('0', 64), coalesce(max(id), 0) FROM audit_log;

-- Rejects a row that does not link to the current head, then advances the head.
-- The head row lock is held until the inserting transaction ends, so appends are
-- serialised in the database, whatever the client does. SECURITY DEFINER lets the
-- service role append without any right to change audit_chain_head itself.
CREATE FUNCTION audit_log_link_to_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    head audit_chain_head%ROWTYPE;
BEGIN
    SELECT * INTO STRICT head FROM audit_chain_head FOR UPDATE;
    IF NEW.row_hash IS NULL OR NEW.prev_hash IS NULL THEN
        RAISE EXCEPTION 'audit_log row % has no prev_hash or row_hash', NEW.id
            USING ERRCODE = 'check_violation',
                  HINT = 'write audit rows through central.audit.AuditLog.record';
    END IF;
    IF NEW.prev_hash <> head.row_hash THEN
        RAISE EXCEPTION 'audit_log row % links to %, but the chain ends at % (row %)',
            NEW.id, NEW.prev_hash, head.row_hash, head.last_id
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF NEW.id <= head.last_id THEN
        RAISE EXCEPTION 'audit_log row id % is not after the chain end, row %',
            NEW.id, head.last_id
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE audit_chain_head SET last_id = NEW.id, row_hash = NEW.row_hash;
    RETURN NEW;
END;
$$;

CREATE TRIGGER audit_log_link_to_chain
    BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_link_to_chain();

CREATE TRIGGER audit_chain_head_no_delete
    BEFORE DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION audit_log_reject_change();

CREATE TRIGGER audit_chain_head_no_truncate
    BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change();

-- PUBLIC holds no table rights by default, so these revokes only guard against a
-- later GRANT ... TO PUBLIC. The table owner keeps every right and can disable the
-- triggers, so central should run as a role that does not own these tables and holds
-- only: SELECT, INSERT ON audit_log; USAGE ON SEQUENCE audit_log_id_seq;
-- SELECT ON audit_chain_head. The migrations then run as the owner.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
REVOKE ALL ON audit_chain_head FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_log_link_to_chain() FROM PUBLIC;
