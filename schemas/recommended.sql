-- Indexes bulkstate recommends beyond Prefect's own (`bulkstate migrate --recommended-indexes`).
-- Each one makes every state write a little more expensive (flow_run updates are not HOT
-- when an indexed column changes), so they are opt-in.
--
-- State and tags: Prefect has no index on flow_run.tags, so filters by tags (jsonb ?& / ?|)
-- scan. One GIN index over (state_type, tags) answers tags alone and state + tags together
-- (btree_gin provides the GIN operator class for the state_type enum; it is a trusted
-- extension). It replaces the tags-only index earlier versions created.
--
-- Its pending list is kept small (512 kB, not the 4 MB default): every state write adds the
-- run's state and tags to that list, and every selection through the index reads all of it.
-- A smaller list is merged into the index more often, which costs the writes a little; the
-- README's Performance section has the measurements.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX IF NOT EXISTS ix_flow_run__state_type_tags_gin ON flow_run USING gin (state_type, tags);
ALTER INDEX ix_flow_run__state_type_tags_gin SET (gin_pending_list_limit = 512);
DROP INDEX IF EXISTS ix_flow_run__tags_gin;
-- Deployment: its runs in id order, so `deployment_id = X ORDER BY id DESC LIMIT n` reads n
-- index entries instead of sorting all the deployment's runs or walking the primary key.
CREATE INDEX IF NOT EXISTS ix_flow_run__deployment_id_id ON flow_run (deployment_id, id);
