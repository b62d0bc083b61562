-- Completes tests/bench/population_1m.sql for orchestration benchmarks: one current state row
-- per run (as Prefect would have written it), the run pointing at it, and the 100 deployments
-- the runs name. Deterministic.
INSERT INTO deployment (id, name, flow_id)
SELECT md5('dep' || d)::uuid, 'bench-dep-' || d, '00000000-0000-4000-8000-0000000000f1'
FROM generate_series(0, 99) AS d
ON CONFLICT DO NOTHING;
INSERT INTO flow_run_state (id, flow_run_id, type, "timestamp", name, state_details)
SELECT md5('state' || fr.id)::uuid, fr.id, fr.state_type,
       COALESCE(fr.end_time, fr.start_time, fr.expected_start_time - interval '1 day'),
       fr.state_name,
       jsonb_build_object('flow_run_id', fr.id, 'scheduled_time',
                          CASE WHEN fr.state_type = 'SCHEDULED' THEN fr.expected_start_time END,
                          'deferred', false, 'untrackable_result', false,
                          'pause_reschedule', false)
FROM flow_run fr;
UPDATE flow_run fr SET state_id = md5('state' || fr.id)::uuid,
                       state_timestamp = COALESCE(fr.end_time, fr.start_time,
                                                  fr.expected_start_time - interval '1 day');
VACUUM ANALYZE flow_run;
VACUUM ANALYZE flow_run_state;
