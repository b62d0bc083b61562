-- Sample flow runs for the demo, in several states. Ids are UUIDv7-shaped, so Prefect's
-- order (id DESC) is newest first: r7 ... r1.
SELECT bulkstate_dev.new_deployment('0193a000-0000-7000-8000-00000000d001', 'nightly-etl');
SELECT bulkstate_dev.new_run('0193a001-0000-7000-8000-000000000001', 'eager-otter', 'PENDING',
                             '{demo}', '0193a000-0000-7000-8000-00000000d001');
SELECT bulkstate_dev.new_run('0193a001-0000-7000-8000-000000000002', 'brisk-heron', 'RUNNING',
                             '{demo}', '0193a000-0000-7000-8000-00000000d001', p_infra_pid => '4242');
SELECT bulkstate_dev.new_run('0193a001-0000-7000-8000-000000000003', 'quiet-lynx', 'SCHEDULED',
                             '{nightly}', '0193a000-0000-7000-8000-00000000d001',
                             p_scheduled => now() + interval '1 hour');
SELECT bulkstate_dev.new_run('0193a001-0000-7000-8000-000000000004', 'amber-finch', 'COMPLETED',
                             '{nightly}', '0193a000-0000-7000-8000-00000000d001',
                             p_data => '{"storage_key": "results/amber-finch.json"}');
SELECT bulkstate_dev.new_run('0193a001-0000-7000-8000-000000000005', 'rusty-marmot', 'FAILED',
                             '{nightly}', '0193a000-0000-7000-8000-00000000d001');
SELECT bulkstate_dev.new_run('0193a001-0000-7000-8000-000000000006', 'swift-ibis', 'SCHEDULED',
                             '{nightly}', '0193a000-0000-7000-8000-00000000d001',
                             p_scheduled => now() - interval '10 minutes', p_state_name => 'Late');
SELECT bulkstate_dev.new_run('0193a001-0000-7000-8000-000000000007', 'calm-badger', 'CRASHED',
                             '{adhoc}');
