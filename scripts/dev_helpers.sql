-- Helpers for the demo and the integration tests (never needed in production): create a flow
-- run with a current state, the way Prefect would have left it. Schema bulkstate_dev.
CREATE SCHEMA IF NOT EXISTS bulkstate_dev;

CREATE OR REPLACE FUNCTION bulkstate_dev.new_run(
    p_id uuid, p_name text, p_state state_type, p_tags text[] DEFAULT '{}',
    p_deployment uuid DEFAULT NULL, p_scheduled timestamptz DEFAULT NULL,
    p_data jsonb DEFAULT NULL, p_infra_pid text DEFAULT NULL,
    p_policy jsonb DEFAULT '{}', p_run_count integer DEFAULT 0, p_state_name text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
  sid uuid := gen_random_uuid();
  ts timestamptz := date_trunc('milliseconds', now()) - interval '1 minute';
  fid uuid;
  art uuid;
  started boolean := p_state IN ('RUNNING', 'COMPLETED', 'FAILED', 'CANCELLING', 'PAUSED',
                                 'CRASHED', 'CANCELLED');
  ended boolean := p_state IN ('COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED');
  sname text := COALESCE(p_state_name, initcap(p_state::text));
BEGIN
  INSERT INTO flow (name) VALUES ('demo-flow') ON CONFLICT (name) DO NOTHING;
  SELECT id INTO fid FROM flow WHERE name = 'demo-flow';
  INSERT INTO flow_run (id, name, flow_id, deployment_id, tags, infrastructure_pid,
                        empirical_policy, run_count, expected_start_time, start_time, end_time,
                        next_scheduled_start_time)
  VALUES (p_id, p_name, fid, p_deployment, to_jsonb(p_tags), p_infra_pid, p_policy, p_run_count,
          COALESCE(p_scheduled, ts), CASE WHEN started THEN ts END, CASE WHEN ended THEN ts END,
          CASE WHEN p_state = 'SCHEDULED' THEN p_scheduled END);
  IF p_data IS NOT NULL THEN
    INSERT INTO artifact (flow_run_id, type, data) VALUES (p_id, 'result', p_data::json)
    RETURNING id INTO art;
  END IF;
  INSERT INTO flow_run_state (id, flow_run_id, type, "timestamp", name, state_details,
                              result_artifact_id)
  VALUES (sid, p_id, p_state, ts, sname,
          jsonb_build_object('flow_run_id', p_id, 'scheduled_time', p_scheduled,
                             'deferred', false, 'untrackable_result', false,
                             'pause_reschedule', false),
          art);
  UPDATE flow_run SET state_id = sid, state_type = p_state, state_name = sname,
                      state_timestamp = ts
  WHERE id = p_id;
  RETURN p_id;
END $$;

CREATE OR REPLACE FUNCTION bulkstate_dev.new_deployment(p_id uuid, p_name text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE fid uuid;
BEGIN
  INSERT INTO flow (name) VALUES ('demo-flow') ON CONFLICT (name) DO NOTHING;
  SELECT id INTO fid FROM flow WHERE name = 'demo-flow';
  INSERT INTO deployment (id, name, flow_id) VALUES (p_id, p_name, fid)
  ON CONFLICT (id) DO NOTHING;
  RETURN p_id;
END $$;

-- A task run of p_flow_run in state p_state (NULL: no state), with tags.
CREATE OR REPLACE FUNCTION bulkstate_dev.new_task_run(
    p_id uuid, p_flow_run uuid, p_state state_type, p_tags text[] DEFAULT '{}')
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
  sid uuid := gen_random_uuid();
  ts timestamptz := date_trunc('milliseconds', now()) - interval '1 minute';
BEGIN
  INSERT INTO task_run (id, name, flow_run_id, task_key, dynamic_key, tags, run_count,
                        start_time, expected_start_time)
  VALUES (p_id, 'task-' || left(p_id::text, 8), p_flow_run, 'subflow-task', p_id::text,
          to_jsonb(p_tags), CASE WHEN p_state = 'RUNNING' THEN 1 ELSE 0 END,
          CASE WHEN p_state = 'RUNNING' THEN ts END, ts);
  IF p_state IS NOT NULL THEN
    INSERT INTO task_run_state (id, task_run_id, type, "timestamp", name, state_details)
    VALUES (sid, p_id, p_state, ts, initcap(p_state::text),
            jsonb_build_object('flow_run_id', p_flow_run, 'task_run_id', p_id));
    UPDATE task_run SET state_id = sid, state_type = p_state, state_name = initcap(p_state::text),
                        state_timestamp = ts
    WHERE id = p_id;
  END IF;
  RETURN p_id;
END $$;
