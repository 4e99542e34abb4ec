-- Every change of a node's state rewrote this index too; (build_id, status)
-- serves the same lookups, and a build's nodes are few enough to sort.
DROP INDEX nodes_build;
