DROP TABLE kv_changes_trimmed;
DROP TABLE kv_changes;
