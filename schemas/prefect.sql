-- Prefect-compatible subset of Prefect's PostgreSQL schema: the tables bulkstate reads and
-- writes (flow_run, flow_run_state; task_run, task_run_state and concurrency_limit for a
-- subflow's parent task run), the ones filters and rules read (flow, deployment, work_pool,
-- work_queue, artifact), with Prefect's names, types, defaults and indexes.
-- Applied by `bulkstate migrate` only when public.flow_run does not exist: on a database that
-- Prefect's own migrations created, this file is skipped.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TYPE state_type AS ENUM ('SCHEDULED','PENDING','RUNNING','COMPLETED','FAILED',
                                'CANCELLED','CRASHED','PAUSED','CANCELLING');

CREATE TABLE flow (
  id uuid NOT NULL DEFAULT gen_random_uuid(), created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, name varchar NOT NULL,
  tags jsonb NOT NULL DEFAULT '[]'::jsonb, labels jsonb,
  CONSTRAINT pk_flow PRIMARY KEY (id), CONSTRAINT uq_flow__name UNIQUE (name));

CREATE TABLE work_pool (
  id uuid NOT NULL DEFAULT gen_random_uuid(), created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, name varchar NOT NULL, type varchar NOT NULL,
  CONSTRAINT pk_work_pool PRIMARY KEY (id), CONSTRAINT uq_work_pool__name UNIQUE (name));

CREATE TABLE work_queue (
  id uuid NOT NULL DEFAULT gen_random_uuid(), created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, name varchar NOT NULL, work_pool_id uuid NOT NULL,
  CONSTRAINT pk_work_queue PRIMARY KEY (id),
  CONSTRAINT uq_work_queue__work_pool_id_name UNIQUE (work_pool_id, name),
  CONSTRAINT fk_work_queue__work_pool_id__work_pool FOREIGN KEY (work_pool_id)
    REFERENCES work_pool (id) ON DELETE CASCADE);

CREATE TABLE artifact (
  id uuid NOT NULL DEFAULT gen_random_uuid(), created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, key varchar, type varchar, data json,
  metadata_ json, task_run_id uuid, flow_run_id uuid, description varchar,
  CONSTRAINT pk_artifact PRIMARY KEY (id));

CREATE TABLE flow_run (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  name varchar NOT NULL,
  state_type state_type,
  run_count integer NOT NULL DEFAULT 0,
  expected_start_time timestamptz,
  next_scheduled_start_time timestamptz,
  start_time timestamptz,
  end_time timestamptz,
  total_run_time interval NOT NULL DEFAULT '0'::interval,
  flow_version varchar,
  parameters jsonb NOT NULL DEFAULT '{}'::jsonb,
  idempotency_key varchar,
  context jsonb NOT NULL DEFAULT '{}'::jsonb,
  empirical_policy jsonb NOT NULL DEFAULT '{}'::jsonb,
  tags jsonb NOT NULL DEFAULT '[]'::jsonb,
  auto_scheduled boolean NOT NULL DEFAULT false,
  flow_id uuid NOT NULL,
  deployment_id uuid,
  parent_task_run_id uuid,
  state_id uuid,
  state_name varchar,
  infrastructure_document_id uuid,
  work_queue_name varchar,
  state_timestamp timestamptz,
  created_by jsonb,
  infrastructure_pid varchar,
  work_queue_id uuid,
  job_variables jsonb DEFAULT '{}'::jsonb,
  deployment_version varchar,
  labels jsonb,
  CONSTRAINT pk_flow_run PRIMARY KEY (id),
  CONSTRAINT fk_flow_run__flow_id__flow FOREIGN KEY (flow_id) REFERENCES flow (id) ON DELETE CASCADE,
  CONSTRAINT fk_flow_run__work_queue_id__work_queue FOREIGN KEY (work_queue_id)
    REFERENCES work_queue (id) ON DELETE SET NULL);

CREATE TABLE flow_run_state (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  type state_type NOT NULL,
  "timestamp" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  name varchar NOT NULL,
  message varchar,
  state_details jsonb NOT NULL DEFAULT '{}'::jsonb,
  data jsonb,
  flow_run_id uuid NOT NULL,
  result_artifact_id uuid,
  CONSTRAINT pk_flow_run_state PRIMARY KEY (id),
  CONSTRAINT fk_flow_run_state__flow_run_id__flow_run FOREIGN KEY (flow_run_id)
    REFERENCES flow_run (id) ON DELETE CASCADE,
  CONSTRAINT fk_flow_run_state__result_artifact_id__artifact FOREIGN KEY (result_artifact_id)
    REFERENCES artifact (id) ON DELETE SET NULL);

CREATE TABLE task_run (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  name varchar NOT NULL, state_type state_type, state_name varchar, state_timestamp timestamptz,
  state_id uuid, run_count integer NOT NULL DEFAULT 0, flow_run_run_count integer NOT NULL DEFAULT 0,
  expected_start_time timestamptz, next_scheduled_start_time timestamptz, start_time timestamptz,
  end_time timestamptz, total_run_time interval NOT NULL DEFAULT '0'::interval,
  task_key varchar NOT NULL, dynamic_key varchar NOT NULL, cache_key varchar,
  cache_expiration timestamptz, task_version varchar,
  empirical_policy jsonb NOT NULL DEFAULT '{}'::jsonb, task_inputs jsonb NOT NULL DEFAULT '{}'::jsonb,
  tags jsonb NOT NULL DEFAULT '[]'::jsonb, labels jsonb, flow_run_id uuid,
  CONSTRAINT pk_task_run PRIMARY KEY (id),
  CONSTRAINT fk_task_run__flow_run_id__flow_run FOREIGN KEY (flow_run_id)
    REFERENCES flow_run (id) ON DELETE CASCADE);

CREATE TABLE task_run_state (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  type state_type NOT NULL, "timestamp" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  name varchar NOT NULL, message varchar, state_details jsonb NOT NULL DEFAULT '{}'::jsonb,
  data jsonb, task_run_id uuid NOT NULL, result_artifact_id uuid,
  CONSTRAINT pk_task_run_state PRIMARY KEY (id),
  CONSTRAINT fk_task_run_state__task_run_id__task_run FOREIGN KEY (task_run_id)
    REFERENCES task_run (id) ON DELETE CASCADE,
  CONSTRAINT fk_task_run_state__result_artifact_id__artifact FOREIGN KEY (result_artifact_id)
    REFERENCES artifact (id) ON DELETE SET NULL);
CREATE UNIQUE INDEX uq_task_run_state__task_run_id_timestamp_desc
  ON task_run_state (task_run_id, "timestamp" DESC);
CREATE INDEX ix_task_run__state_id ON task_run (state_id);

-- concurrency_limit: Prefect's tag concurrency limits of the first API (a subflow's parent task
-- run leaves their active_slots when its state is set).
CREATE TABLE concurrency_limit (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  tag varchar NOT NULL, concurrency_limit integer NOT NULL,
  active_slots jsonb NOT NULL DEFAULT '[]'::jsonb,
  CONSTRAINT pk_concurrency_limit PRIMARY KEY (id));
CREATE UNIQUE INDEX uq_concurrency_limit__tag ON concurrency_limit (tag);

ALTER TABLE flow_run
  ADD CONSTRAINT fk_flow_run__state_id__flow_run_state FOREIGN KEY (state_id)
    REFERENCES flow_run_state (id) ON DELETE SET NULL,
  ADD CONSTRAINT fk_flow_run__parent_task_run_id__task_run FOREIGN KEY (parent_task_run_id)
    REFERENCES task_run (id) ON DELETE SET NULL;

CREATE UNIQUE INDEX uq_flow_run_state__flow_run_id_timestamp_desc ON flow_run_state (flow_run_id, "timestamp" DESC);
CREATE UNIQUE INDEX uq_flow_run__flow_id_idempotency_key ON flow_run (flow_id, idempotency_key);
CREATE UNIQUE INDEX uq_task_run__flow_run_id_task_key_dynamic_key ON task_run (flow_run_id, task_key, dynamic_key);
CREATE INDEX ix_flow_run__state_id ON flow_run (state_id);
CREATE INDEX ix_flow_run__state_type ON flow_run (state_type);
CREATE INDEX ix_flow_run__state_name ON flow_run (state_name);
CREATE INDEX ix_flow_run__state_timestamp ON flow_run (state_timestamp);
CREATE INDEX ix_flow_run__flow_id ON flow_run (flow_id);
CREATE INDEX ix_flow_run__deployment_id ON flow_run (deployment_id);
CREATE INDEX ix_flow_run__work_queue_name ON flow_run (work_queue_name);
CREATE INDEX ix_flow_run__work_queue_id ON flow_run (work_queue_id);
CREATE INDEX ix_flow_run__flow_version ON flow_run (flow_version);
CREATE INDEX ix_flow_run__parent_task_run_id ON flow_run (parent_task_run_id);
CREATE INDEX ix_flow_run__start_time ON flow_run (start_time);
CREATE INDEX ix_flow_run__end_time_desc ON flow_run (end_time DESC);
CREATE INDEX ix_flow_run__expected_start_time_desc ON flow_run (expected_start_time DESC);
CREATE INDEX ix_flow_run__next_scheduled_start_time_asc ON flow_run (next_scheduled_start_time);
CREATE INDEX ix_flow_run__coalesce_start_time_expected_start_time_desc
  ON flow_run (COALESCE(start_time, expected_start_time) DESC);
CREATE INDEX ix_flow_run__coalesce_start_time_expected_start_time_asc
  ON flow_run (COALESCE(start_time, expected_start_time));
CREATE INDEX ix_flow_run__deployment_version ON flow_run (deployment_version);
CREATE INDEX ix_flow_run__infrastructure_document_id ON flow_run (infrastructure_document_id);
CREATE INDEX ix_flow_run__scheduler_deployment_id_auto_scheduled_next_schedu
  ON flow_run (deployment_id, auto_scheduled, next_scheduled_start_time)
  WHERE state_type = 'SCHEDULED';
CREATE INDEX ix_flow_run__schedule_id_scheduler
  ON flow_run (deployment_id, (created_by ->> 'id'), next_scheduled_start_time)
  WHERE state_type = 'SCHEDULED' AND auto_scheduled = true;
CREATE INDEX ix_flow_run__name ON flow_run (name);
CREATE INDEX ix_flow_run__updated ON flow_run (updated);
CREATE INDEX trgm_ix_flow_run_name ON flow_run USING gin (name gin_trgm_ops);
CREATE INDEX ix_flow_run_state__type ON flow_run_state (type);
CREATE INDEX ix_flow_run_state__name ON flow_run_state (name);
CREATE INDEX ix_flow_run_state__result_artifact_id ON flow_run_state (result_artifact_id);
CREATE INDEX ix_flow_run_state__updated ON flow_run_state (updated);
CREATE INDEX ix_task_run__flow_run_id ON task_run (flow_run_id);

-- concurrency_limit_v2: the deployment concurrency limits the orchestration rules read.
CREATE TABLE concurrency_limit_v2 (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  active boolean NOT NULL,
  name varchar NOT NULL,
  "limit" integer NOT NULL,
  active_slots integer NOT NULL,
  denied_slots integer NOT NULL,
  slot_decay_per_second double precision NOT NULL,
  avg_slot_occupancy_seconds double precision NOT NULL,
  CONSTRAINT pk_concurrency_limit_v2 PRIMARY KEY (id),
  CONSTRAINT uq_concurrency_limit_v2__name UNIQUE (name));
CREATE INDEX ix_concurrency_limit_v2__updated ON concurrency_limit_v2 (updated);

-- deployment: trimmed to the columns the orchestration rules read.
CREATE TABLE deployment (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  name varchar NOT NULL,
  flow_id uuid NOT NULL,
  work_queue_name varchar,
  work_queue_id uuid,
  concurrency_limit integer,
  concurrency_limit_id uuid,
  concurrency_options jsonb,
  tags jsonb NOT NULL DEFAULT '[]'::jsonb,
  paused boolean NOT NULL DEFAULT false,
  CONSTRAINT pk_deployment PRIMARY KEY (id),
  CONSTRAINT fk_deployment__flow_id__flow FOREIGN KEY (flow_id) REFERENCES flow (id) ON DELETE CASCADE,
  CONSTRAINT fk_deployment__concurrency_limit_id__concurrency_limit_v2
    FOREIGN KEY (concurrency_limit_id) REFERENCES concurrency_limit_v2 (id) ON DELETE SET NULL,
  CONSTRAINT uq_deployment__flow_id_name UNIQUE (flow_id, name));
CREATE INDEX ix_deployment__work_queue_name ON deployment (work_queue_name);

-- present in Prefect 3.9.1's migrations (checked against a database they created)
CREATE INDEX ix_flow_run__state_type_coalesce_start_time
  ON flow_run (state_type, COALESCE(start_time, expected_start_time));
