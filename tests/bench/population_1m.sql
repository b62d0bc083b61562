-- A realistic population of 1,000,000 flow runs for the selection checks and benchmarks:
-- 60% SCHEDULED, 30% COMPLETED, 5% FAILED, 5% RUNNING; 100 deployments (a quarter of the runs
-- without); 10 work queues; three tags per run (50 + 7 + 2 distinct); a year of expected
-- start times; a share with created_by and idempotency keys. Deterministic (no random()).
INSERT INTO flow (id, name) VALUES ('00000000-0000-4000-8000-0000000000f1', 'bench-flow')
ON CONFLICT DO NOTHING;
INSERT INTO flow_run (id, name, flow_id, state_type, state_name, tags, deployment_id,
                      work_queue_name, expected_start_time, next_scheduled_start_time,
                      start_time, end_time, flow_version, idempotency_key, created_by)
SELECT md5('run' || i)::uuid,
       'run-' || i || '-' || (ARRAY['eager', 'brisk', 'quiet', 'amber', 'rusty'])[1 + i % 5],
       '00000000-0000-4000-8000-0000000000f1',
       s.st, initcap(s.st::text),
       jsonb_build_array('t' || (i % 50), 'u' || (i % 7),
                         CASE WHEN i % 3 = 0 THEN 'nightly' ELSE 'adhoc' END),
       CASE WHEN i % 4 = 0 THEN NULL ELSE md5('dep' || (i % 100))::uuid END,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'q' || (i % 10) END,
       s.t,
       CASE WHEN s.st = 'SCHEDULED' THEN s.t END,
       CASE WHEN s.st <> 'SCHEDULED' THEN s.t + interval '5 seconds' END,
       CASE WHEN s.st IN ('COMPLETED', 'FAILED') THEN s.t + interval '65 seconds' END,
       '1.' || (i % 4),
       CASE WHEN i % 10 = 0 THEN 'key-' || i END,
       CASE WHEN i % 8 = 0 THEN jsonb_build_object('id', md5('creator' || (i % 20))::uuid,
                                                   'type', 'DEPLOYMENT', 'display_value', 'x') END
FROM generate_series(1, 1000000) AS i,
     LATERAL (SELECT (CASE WHEN i % 100 < 60 THEN 'SCHEDULED' WHEN i % 100 < 90 THEN 'COMPLETED'
                           WHEN i % 100 < 95 THEN 'FAILED' ELSE 'RUNNING' END)::state_type AS st,
                     timestamptz '2026-01-01 00:00:00+00' + (i % 525600) * interval '1 minute' AS t) AS s;
VACUUM ANALYZE flow_run;
