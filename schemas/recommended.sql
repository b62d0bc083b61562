-- Indexes bulkstate recommends beyond Prefect's own (`bulkstate migrate --recommended-indexes`).
-- Each one makes every state write a little more expensive (flow_run updates are not HOT
-- when an indexed column changes), so they are opt-in.
--
-- tags: Prefect has no index on flow_run.tags; filters by tags (jsonb ?& / ?|) then scan.
CREATE INDEX IF NOT EXISTS ix_flow_run__tags_gin ON flow_run USING gin (tags);
