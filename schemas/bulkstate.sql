-- bulkstate's own tables, in their own schema beside Prefect's. Idempotent: applied by every
-- `bulkstate migrate`.
CREATE SCHEMA IF NOT EXISTS bulkstate;

-- One row per command id: the idempotency record. Written in the same transaction as the
-- transitions, so a redelivered command finds status 'done' and is not applied again.
CREATE TABLE IF NOT EXISTS bulkstate.command (
  command_id text PRIMARY KEY,
  body_sha256 text NOT NULL,          -- SHA-256 of the normalised command body
  source_topic text,
  source_partition integer,
  source_offset bigint,
  run_ids uuid[] NOT NULL DEFAULT '{}', -- the selected runs, in Prefect's order (id DESC)
  status text NOT NULL CHECK (status IN ('running', 'done')),
  matched integer NOT NULL DEFAULT 0,
  accepted integer NOT NULL DEFAULT 0,
  rejected integer NOT NULL DEFAULT 0,
  waited integer NOT NULL DEFAULT 0,
  aborted integer NOT NULL DEFAULT 0,
  attempts integer NOT NULL DEFAULT 1,
  created timestamptz NOT NULL DEFAULT now(),
  completed timestamptz
);

-- Every result exactly as encoded for the reply topic, republished on redelivery.
CREATE TABLE IF NOT EXISTS bulkstate.command_result (
  command_id text NOT NULL REFERENCES bulkstate.command (command_id) ON DELETE CASCADE,
  seq integer NOT NULL,
  flow_run_id uuid NOT NULL,
  status text NOT NULL,
  reply bytea NOT NULL,
  PRIMARY KEY (command_id, seq)
);

-- Deliveries of a message that have started: bumped in its own committed statement before the
-- message is decoded, removed once it is settled. A message that keeps killing the worker
-- (crash, OOM kill, timeout) is dead-lettered after worker.max_attempts deliveries instead of
-- stalling its partition forever.
CREATE TABLE IF NOT EXISTS bulkstate.delivery_attempt (
  topic text NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  attempts integer NOT NULL DEFAULT 1,
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (topic, partition, "offset")
);

-- Deployment concurrency leases taken by bulkstate (rule SecureFlowConcurrencySlots). The slot
-- itself is counted in Prefect's concurrency_limit_v2.active_slots, changed in the same
-- transaction as the transition; Prefect's server keeps its own leases in its memory, so
-- bulkstate keeps its leases here. A lease lives while its run is PENDING: bulkstate revokes it
-- when the run moves on, and the worker's reaper frees the slot of a lease that expired while
-- its run was still PENDING (as Prefect's repossessor does). No foreign keys: Prefect may delete
-- limits and runs on its own.
CREATE TABLE IF NOT EXISTS bulkstate.deployment_lease (
  id uuid PRIMARY KEY,
  limit_id uuid NOT NULL,     -- concurrency_limit_v2.id
  flow_run_id uuid NOT NULL,  -- the run whose PENDING state carries the lease id
  slots integer NOT NULL DEFAULT 1,
  created timestamptz NOT NULL DEFAULT now(),
  expiration timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_deployment_lease__expiration
  ON bulkstate.deployment_lease (expiration);

-- The state-change event of each written transition (Prefect's shape, JSON), published to the
-- optional events topic after commit and again on redelivery. Added after the first release.
ALTER TABLE bulkstate.command_result ADD COLUMN IF NOT EXISTS event text;
-- When the events go to Prefect's server, a written transition keeps what its event is built
-- from at delivery: the state written, the run's state before it (NULL: none) and the run's
-- run_count after it; the rest is read from the rows they name. Its event is stored whole only
-- for an events topic (and then posted as stored). Added after the first release.
ALTER TABLE bulkstate.command_result ADD COLUMN IF NOT EXISTS state_id uuid;
ALTER TABLE bulkstate.command_result ADD COLUMN IF NOT EXISTS prior_state_id uuid;
ALTER TABLE bulkstate.command_result ADD COLUMN IF NOT EXISTS run_count bigint;

-- Large commands (max_runs): applied in batches, each its own transaction. The command row is
-- the checkpoint: where the walk stands (last_id, in Prefect's order, id DESC) and the snapshot
-- that fixes the set of runs at the start (the highest matching id and the time then).
-- Added after the first release.
ALTER TABLE bulkstate.command ADD COLUMN IF NOT EXISTS max_runs integer;
ALTER TABLE bulkstate.command ADD COLUMN IF NOT EXISTS snapshot_max_id uuid;
ALTER TABLE bulkstate.command ADD COLUMN IF NOT EXISTS snapshot_at timestamptz;
ALTER TABLE bulkstate.command ADD COLUMN IF NOT EXISTS last_id uuid;
ALTER TABLE bulkstate.command ADD COLUMN IF NOT EXISTS batches integer NOT NULL DEFAULT 0;
ALTER TABLE bulkstate.command ADD COLUMN IF NOT EXISTS acked_seq integer NOT NULL DEFAULT 0;
ALTER TABLE bulkstate.command ADD COLUMN IF NOT EXISTS cancel_requested boolean NOT NULL DEFAULT false;
ALTER TABLE bulkstate.command ADD COLUMN IF NOT EXISTS cancelled boolean NOT NULL DEFAULT false;

-- Events for Prefect's event bus ([prefect] api_url): written in the transaction of the states
-- they describe, posted to Prefect's events API by the worker's delivery thread, deleted once
-- Prefect took them. seq is the delivery order; per run it is the commit order (a run's states
-- are written under its row lock). Added after the first release.
CREATE TABLE IF NOT EXISTS bulkstate.prefect_outbox (
  seq bigserial PRIMARY KEY,
  flow_run_id uuid NOT NULL,
  event text NOT NULL,
  created timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- An event is stored once: in the command_result row that command_id and result_seq name (the
-- event column is then NULL), as the event or what it is built from; rows written before that
-- carry their event themselves.
ALTER TABLE bulkstate.prefect_outbox ALTER COLUMN event DROP NOT NULL;
ALTER TABLE bulkstate.prefect_outbox ADD COLUMN IF NOT EXISTS command_id text;
ALTER TABLE bulkstate.prefect_outbox ADD COLUMN IF NOT EXISTS result_seq integer;
-- One row per recorded batch: the events of command_result rows result_seq..result_last of
-- command_id (those whose event or state_id is not NULL; events counts the ones still to
-- deliver). A delivery that takes part of a batch moves result_seq past what it delivered.
-- Rows without result_last name one event. Added after the first release.
ALTER TABLE bulkstate.prefect_outbox ALTER COLUMN flow_run_id DROP NOT NULL;
ALTER TABLE bulkstate.prefect_outbox ADD COLUMN IF NOT EXISTS result_last integer;
ALTER TABLE bulkstate.prefect_outbox ADD COLUMN IF NOT EXISTS events integer;
-- Events Prefect refused (a 4xx answer other than auth or throttling), kept with its answer for
-- the operator instead of blocking the ones after them.
CREATE TABLE IF NOT EXISTS bulkstate.prefect_outbox_refused (
  seq bigint PRIMARY KEY,
  flow_run_id uuid NOT NULL,
  event text NOT NULL,
  created timestamptz NOT NULL,
  refused timestamptz NOT NULL DEFAULT now(),
  answer text
);
-- The delivery thread LISTENs: a commit that wrote events wakes it (one notification per
-- statement that inserted rows; PostgreSQL folds identical ones of a transaction).
CREATE OR REPLACE FUNCTION bulkstate.prefect_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM added) THEN
    PERFORM pg_notify('bulkstate_prefect_outbox', '');
  END IF;
  RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER prefect_outbox_notify AFTER INSERT ON bulkstate.prefect_outbox
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT
  EXECUTE FUNCTION bulkstate.prefect_outbox_notify();

-- Deployment concurrency leases Prefect's server holds (in its memory) that a transition
-- bulkstate wrote releases: released after the commit through Prefect's API (it decrements the
-- slots and revokes the lease, so its engine stops renewing it); a lease Prefect no longer has
-- frees one slot on fallback_limit_id, as Prefect's server does. Delivered by the same thread
-- as the outbox.
CREATE TABLE IF NOT EXISTS bulkstate.prefect_lease_release (
  seq bigserial PRIMARY KEY,
  lease_id uuid NOT NULL,
  fallback_limit_id uuid,
  created timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- a subflow's parent task run leaving RUNNING/CANCELLING: the leases its tag limits hold in
-- Prefect's server (task_run_id set, lease_id NULL) are released by Prefect's
-- POST /concurrency_limits/decrement, with the task run's tags
ALTER TABLE bulkstate.prefect_lease_release ALTER COLUMN lease_id DROP NOT NULL;
ALTER TABLE bulkstate.prefect_lease_release ADD COLUMN IF NOT EXISTS task_run_id uuid;
ALTER TABLE bulkstate.prefect_lease_release ADD COLUMN IF NOT EXISTS tags jsonb;
CREATE OR REPLACE TRIGGER prefect_lease_release_notify AFTER INSERT
  ON bulkstate.prefect_lease_release REFERENCING NEW TABLE AS added FOR EACH STATEMENT
  EXECUTE FUNCTION bulkstate.prefect_outbox_notify();
